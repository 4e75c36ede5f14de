"""Experiment specifications: variants, weights, coverage, status and metrics."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from abrec.bandit.settings import BanditSettings
from abrec.errors import ConfigError, ExperimentError, format_validation_error
from abrec.store.events import printable_id

Status = Literal["draft", "running", "stopped"]
ExperimentType = Literal["ab", "interleaving", "bandit"]
InterleavingMethod = Literal["team_draft", "balanced", "multileave"]

#: The variant name an interleaving experiment logs its exposures (and expects clicks) under:
#: every unit sees one merged list; which ranker contributed each item is in ``source``.
INTERLEAVED = "interleaved"

#: Metrics the analysis knows how to compute from stored events.
METRICS: tuple[str, ...] = (
    "ctr",
    "clicks_per_unit",
    "conversions_per_unit",
    "exposures_per_unit",
)

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
"""Experiment ids also appear in URL paths, so on top of the printable-id rule
(`abrec.store.events.printable_id`) they are URL-safe slugs."""

MAX_VARIANTS = 100


def _finite_or_none(w: object) -> float | None:
    """`w` as a finite float, or None when it is not a finite JSON number (bools excluded)."""
    if not isinstance(w, int | float) or isinstance(w, bool):
        return None
    try:
        f = float(w)
    except OverflowError:  # an int beyond the float range
        return None
    return f if math.isfinite(f) else None


def _sum_or_inf(weights: list[float]) -> float:
    try:
        return math.fsum(weights)
    except OverflowError:  # fsum raises instead of returning inf
        return math.inf


class Variant(BaseModel):
    """One arm of an experiment: its name, traffic weight and the model it serves.

    Names and model names follow the one printable-id rule; the weight is a finite
    number >= 0 (JSON numbers only: no strings, no booleans).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, max_length=128)
    weight: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)
    model: str = Field(min_length=1, max_length=256)

    @field_validator("name", "model")
    @classmethod
    def _printable(cls, s: str) -> str:
        return printable_id(s)


class InterleavingSettings(BaseModel):
    """How an interleaving experiment merges its variants' rankings.

    ``team_draft`` (Radlinski et al. 2008) and ``balanced`` (Joachims 2003) compare two
    rankers; ``multileave`` is team-draft multileaving (Schuth et al. 2014) for two or more.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    method: InterleavingMethod = "team_draft"


class ExperimentSpec(BaseModel):
    """An experiment over variants (each serving a model); weights are normalised to sum
    to 1 on construction.

    ``type``: ``ab`` splits units between variants by weight; ``interleaving`` shows every
    unit one list merged from all variants' rankings and credits clicks to the ranker that
    contributed the item (weights unused); ``bandit`` splits new units by Thompson sampling
    on the primary metric, the weights recomputed by the service from the store.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field(pattern=_ID_PATTERN)
    type: ExperimentType = "ab"
    interleaving: InterleavingSettings | None = None
    bandit: BanditSettings | None = None
    seed: str | None = Field(default=None, min_length=1, max_length=256)
    hash_version: Literal[1, 2] = 2
    variants: list[Variant] = Field(min_length=2, max_length=MAX_VARIANTS)
    coverage: float = Field(default=1.0, ge=0.0, le=1.0, allow_inf_nan=False)
    status: Status = "draft"
    primary_metric: str = "ctr"
    guardrails: list[str] = Field(default_factory=list)
    sticky: bool = True
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0, allow_inf_nan=False)
    control: str | None = None
    description: str = Field(default="", max_length=4000)
    planned_units: int | None = Field(
        default=None,
        ge=2,
        description="planned sample (units, all variants); tunes the sequential test "
        "(default 10,000)",
    )
    sequential_look_every: int | None = Field(
        default=None,
        ge=1,
        description="units (in entry order) between looks of the sequential CTR test; "
        "the reported p-value is the minimum over looks (default 100)",
    )

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("seed") is None and isinstance(data.get("id"), str):
            data["seed"] = data["id"]
        variants = data.get("variants")
        if isinstance(variants, list) and variants:
            raw: list[dict[str, Any]] = []
            for v in variants:
                if isinstance(v, Variant):
                    raw.append(v.model_dump())
                elif isinstance(v, dict):
                    raw.append(dict(v))
                else:
                    return data  # let field validation report the bad entry
            weights = [_finite_or_none(w.get("weight", 1.0)) for w in raw]
            # invalid weights (non-numbers, NaN, inf, negative) are left to field validation
            if all(w is not None and w >= 0 for w in weights):
                total = _sum_or_inf([w for w in weights if w is not None])
                if not math.isfinite(total):
                    raise ValueError(
                        "variant weights sum to infinity; use relative weights such as 1 and 1"
                    )
                if total <= 0:
                    raise ValueError("variant weights sum to 0; give at least one a weight > 0")
                for w, entry in zip(weights, raw, strict=True):
                    entry["weight"] = float(w or 0.0) / total
            data["variants"] = raw
            if data.get("control") is None and isinstance(raw[0].get("name"), str):
                data["control"] = raw[0]["name"]
        return data

    @field_validator("seed", "control")
    @classmethod
    def _printable(cls, s: str | None) -> str | None:
        return None if s is None else printable_id(s)

    @model_validator(mode="after")
    def _check(self) -> Self:
        total = math.fsum(self.weights)
        if not (math.isfinite(total) and abs(total - 1.0) <= 1e-9):
            raise ValueError(f"variant weights must sum to 1 after normalisation, not {total}")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        if self.control not in names:
            raise ValueError(f"control {self.control!r} is not one of the variants {names}")
        for metric in [self.primary_metric, *self.guardrails]:
            if metric not in METRICS:
                raise ValueError(f"unknown metric {metric!r}; choose from {list(METRICS)}")
        self._check_type(names)
        return self

    def _check_type(self, names: list[str]) -> None:
        if self.type != "interleaving" and self.interleaving is not None:
            raise ValueError("'interleaving' settings need type = 'interleaving'")
        if self.type != "bandit" and self.bandit is not None:
            raise ValueError("'bandit' settings need type = 'bandit'")
        if self.type == "interleaving":
            if INTERLEAVED in names:
                raise ValueError(
                    f"an interleaving experiment logs under the variant {INTERLEAVED!r}; "
                    "rename the variant called so"
                )
            method = self.interleaving_method
            if method != "multileave" and len(names) != 2:
                raise ValueError(
                    f"{method} interleaving compares exactly 2 variants, got {len(names)}; "
                    "use method = 'multileave' for more"
                )
        if self.type == "bandit":
            if not self.sticky:
                raise ValueError(
                    "a bandit experiment must be sticky: weights change over time and a unit "
                    "keeps the arm (and the probability) it was first assigned with"
                )
            if self.primary_metric != "ctr":
                raise ValueError(
                    "a bandit experiment allocates by Thompson sampling on CTR (Beta-Bernoulli "
                    f"on clicks per exposure); set primary_metric = 'ctr', not "
                    f"{self.primary_metric!r}"
                )
            try:
                self.bandit_settings.check_arms(len(names))
            except ConfigError as exc:
                raise ValueError(str(exc)) from None

    @property
    def interleaving_method(self) -> InterleavingMethod:
        """The merge method (team-draft unless set)."""
        return (self.interleaving or InterleavingSettings()).method

    @property
    def bandit_settings(self) -> BanditSettings:
        """The bandit settings (defaults unless set)."""
        return self.bandit or BanditSettings()

    @property
    def variant_names(self) -> list[str]:
        """Variant names in declaration order (the GrowthBook variation order)."""
        return [v.name for v in self.variants]

    @property
    def weights(self) -> list[float]:
        """Normalised weights in variant order."""
        return [v.weight for v in self.variants]

    @property
    def hash_seed(self) -> str:
        """Seed used for hashing (the id unless set)."""
        return self.seed if self.seed is not None else self.id

    def variant(self, name: str) -> Variant:
        """The variant called ``name``.

        Raises:
            ExperimentError: when the experiment has no such variant.
        """
        for v in self.variants:
            if v.name == name:
                return v
        raise ExperimentError(
            f"experiment {self.id!r} has no variant {name!r}; variants are {self.variant_names}"
        )

    def with_updates(self, **changes: Any) -> ExperimentSpec:
        """A validated copy with some fields replaced."""
        data = self.model_dump()
        data.update(changes)
        return parse_spec(data)


def parse_spec(data: dict[str, Any]) -> ExperimentSpec:
    """Validate a spec from a plain dict, raising :class:`ExperimentError` on bad input."""
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        ident = data.get("id", "?") if isinstance(data, dict) else "?"
        raise ExperimentError(
            f"invalid experiment spec {ident!r}: {format_validation_error(exc, what='spec')}"
        ) from exc


def load_specs(path: str | Path) -> list[ExperimentSpec]:
    """Read experiment specs from a TOML file with ``[[experiment]]`` tables.

    Raises:
        ConfigError: when the file is missing, not TOML, or a spec is invalid.
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"experiments file {p} does not exist; check the path") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"experiments file {p} is not valid TOML: {exc}") from exc
    unknown = set(doc) - {"experiment"}
    if unknown:
        raise ConfigError(
            f"{p}: unknown top-level keys {sorted(unknown)}; use [[experiment]] tables"
        )
    tables = doc.get("experiment", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{p}: 'experiment' must be an array of tables ([[experiment]])")
    specs: list[ExperimentSpec] = []
    seen: set[str] = set()
    for i, table in enumerate(tables):
        try:
            spec = ExperimentSpec.model_validate(table)
        except ValidationError as exc:
            raise ConfigError(
                f"{p}: experiment #{i + 1} is invalid: {format_validation_error(exc, what='spec')}"
            ) from exc
        if spec.id in seen:
            raise ConfigError(f"{p}: experiment id {spec.id!r} appears more than once")
        seen.add(spec.id)
        specs.append(spec)
    return specs
