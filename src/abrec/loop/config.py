"""The loop's configuration: an offline run config (data, protocol, candidate models) plus a
``[loop]`` table (rounds, champion, screening and test budgets, click model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from abrec.errors import ConfigError, format_validation_error
from abrec.offline.config import RunConfig, parse_config, read_toml, resolve_paths
from abrec.simulate.click_model import ClickModel


class LoopSettings(BaseModel):
    """How the loop iterates (see docs/statistics.md, "The optimisation loop")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rounds: int = Field(default=3, ge=1, le=50, description="rounds to run")
    champion: str = Field(
        min_length=1, description="model serving at the start (a [[models]] name)"
    )
    screen_top: int = Field(
        default=2, ge=1, le=10, description="candidates that go on to the interleaving screen"
    )
    screen_metric: str = Field(default="ndcg@10", description="offline metric of the screen")
    interleaving_users: int = Field(default=300, ge=20, description="users per interleaving screen")
    ab_users: int = Field(default=600, ge=20, description="users an A/B test may use at most")
    min_ab_units: int = Field(
        default=100, ge=2, description="units before the sequential A/B test may stop early"
    )
    sessions_mean: float = Field(default=3.0, ge=1.0)
    k: int = Field(default=10, ge=1, le=100)
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    feedback_rating: float = Field(
        default=5.0, description="rating given to a click when it becomes a training interaction"
    )
    ope_min_support: int = Field(
        default=30,
        ge=1,
        description="matched logged exposures an off-policy estimate needs to screen a model out",
    )
    concurrency: int = Field(default=6, ge=1, le=64)
    poll_s: float = Field(default=1.0, gt=0.0)
    seed: int = 0
    click_model: ClickModel = Field(default_factory=ClickModel)


class LoopConfig(BaseModel):
    """`run` (candidates and data, as `abrec evaluate` reads them) and `loop`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: RunConfig
    loop: LoopSettings

    @model_validator(mode="after")
    def _champion_is_a_model(self) -> LoopConfig:
        names = [m.name for m in self.run.models]
        if self.loop.champion not in names:
            raise ValueError(
                f"loop.champion {self.loop.champion!r} is not one of the models {names}"
            )
        if len(names) < 2:
            raise ValueError("the loop needs the champion and at least one candidate model")
        return self

    @property
    def candidates(self) -> list[str]:
        """Every configured model but the champion at the start."""
        return [m.name for m in self.run.models if m.name != self.loop.champion]


def parse_loop_config(
    doc: dict[str, Any], source: str = "<config>", base: Path | None = None
) -> LoopConfig:
    """A loop config from a parsed TOML document (``[loop]`` plus an offline run config)."""
    doc = dict(doc)
    loop = doc.pop("loop", None)
    if not isinstance(loop, dict):
        raise ConfigError(f"{source}: a loop config needs a [loop] table (rounds, champion, …)")
    run = parse_config(doc, source)
    if base is not None:
        run = resolve_paths(run, base)
    try:
        return LoopConfig(run=run, loop=LoopSettings.model_validate(loop))
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc, what='loop')}") from exc


def load_loop_config(path: str | Path) -> LoopConfig:
    """Read a loop config from TOML (relative data paths resolve against its folder)."""
    p = Path(path)
    return parse_loop_config(read_toml(p, "examples/loop.toml"), str(p), p.parent)
