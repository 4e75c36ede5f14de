"""Service configuration: a pydantic model read from a TOML file, plus the tokens.

The admin, read and metrics tokens are part of the configuration (`ServeConfig.admin_token`,
`ServeConfig.read_token`, `ServeConfig.metrics_token`: `SecretStr`s that never show in a
repr or a log) and are handed to `create_app` with the rest of it. They are not read from
the TOML file (secrets do not belong in config files): `abrec serve` takes them from the
`ABREC_ADMIN_TOKEN`, `ABREC_READ_TOKEN` and `ABREC_METRICS_TOKEN` environment variables
(`admin_token_from_env`, `read_token_from_env`, `metrics_token_from_env`).
See docs/security.md for who may call what.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from abrec.errors import ConfigError, format_validation_error

ADMIN_TOKEN_ENV = "ABREC_ADMIN_TOKEN"
READ_TOKEN_ENV = "ABREC_READ_TOKEN"
#: The service TOML a worker process of `abrec serve --workers N` reads.
CONFIG_ENV = "ABREC_SERVE_CONFIG"
METRICS_TOKEN_ENV = "ABREC_METRICS_TOKEN"
_SECRETS = {
    "admin_token": ADMIN_TOKEN_ENV,
    "read_token": READ_TOKEN_ENV,
    "metrics_token": METRICS_TOKEN_ENV,
}


class BatchConfig(BaseModel):
    """How the event writer groups events into transactions."""

    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(default=500, ge=1, le=100_000)
    max_delay_s: float = Field(default=0.005, ge=0.0, le=10.0)


class ServeConfig(BaseModel):
    """Everything `abrec serve` needs: store, model bundle, experiments, limits, tokens."""

    model_config = ConfigDict(extra="forbid")

    store_url: str = "sqlite:///runs/events.db"
    bundle: Path | None = Field(
        default=None, description="the model bundle folder to serve (or set model_registry)"
    )
    model_registry: Path | None = Field(
        default=None,
        description="a model registry (`abrec models`): serve its promoted version (or the "
        "version a reload stored), reloadable without a restart; replaces bundle",
    )
    sync_poll_s: float = Field(
        default=0.25,
        gt=0.0,
        le=10.0,
        description="how often each service process checks the store for experiment and "
        "serving-model changes other processes made (PostgreSQL also notifies at once)",
    )
    experiments: Path | None = None
    fallback_model: str | None = None
    max_k: int = Field(default=100, ge=1, le=10_000)
    max_events_per_request: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        description="largest request body accepted (bytes); larger bodies get 413 unread",
    )
    batch: BatchConfig = Field(default_factory=BatchConfig)
    table_prefix: str = "abrec_"
    docs: bool = Field(
        default=False,
        description="serve the interactive API docs at /docs (Swagger UI loads its assets "
        "from a CDN, so it needs internet access in the browser); /openapi.json is always on",
    )
    db_connect_retries: int = Field(
        default=5,
        ge=0,
        le=100,
        description="retries of the first database connection at start (0: fail at once)",
    )
    db_connect_timeout_s: float = Field(
        default=5.0, gt=0.0, le=300.0, description="timeout of one connection attempt"
    )
    db_retry_backoff_s: float = Field(
        default=0.5,
        ge=0.0,
        le=60.0,
        description="wait before the first retry; doubled after each retry (at most 30 s)",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        min_length=1,
        description="bearer token of the admin routes (also grants reads); None disables "
        "them (401)",
    )
    read_token: SecretStr | None = Field(
        default=None,
        min_length=1,
        description="bearer token of the read routes (results, experiment list, detailed "
        "readiness); the admin token grants them too",
    )

    metrics_token: SecretStr | None = Field(
        default=None,
        min_length=1,
        description="bearer token of /metrics; None leaves /metrics open (it carries the "
        "ids of running experiments, their variants and model names)",
    )
    monitor: bool = Field(
        default=True,
        description="run the background monitor (experiment health and drift gauges, the "
        "results' drift) every monitor_interval_s",
    )
    monitor_interval_s: float = Field(
        default=60.0, ge=0.5, le=3600.0, description="seconds between two monitor runs"
    )
    monitor_max_experiments: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="running experiments (first by id) exported with per-experiment labels; "
        "the others are counted in abrec_experiments_unmonitored",
    )
    drift_interval_s: float = Field(
        default=300.0,
        ge=1.0,
        le=86_400.0,
        description="seconds between two drift computations (at the next monitor run after "
        "that; the first one this long after start); health series use monitor_interval_s",
    )
    drift_window: int = Field(
        default=10_000,
        ge=100,
        le=1_000_000,
        description="latest exposures per experiment compared with training by the drift checks",
    )

    @model_validator(mode="after")
    def _one_model_source(self) -> Self:
        if (self.bundle is None) == (self.model_registry is None):
            raise ValueError(
                "set exactly one of bundle (a bundle folder) and model_registry (a model "
                "registry whose promoted version is served)"
            )
        return self

    @classmethod
    def from_toml(cls, path: str | Path) -> ServeConfig:
        """Read a TOML file; relative paths in it are resolved against the file's folder."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"config file {path} does not exist; pass --config path/to/serve.toml"
            )
        try:
            raw: dict[str, Any] = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        raw = raw.get("serve", raw)
        for key, env in _SECRETS.items():
            if key in raw:
                raise ConfigError(
                    f"{path}: {key} does not belong in a config file; "
                    f"set the {env} environment variable of `abrec serve` instead"
                )
        base = path.resolve().parent
        for key in ("bundle", "model_registry", "experiments"):
            if isinstance(raw.get(key), str) and not Path(raw[key]).is_absolute():
                raw[key] = str(base / raw[key])
        url = raw.get("store_url")
        if (
            isinstance(url, str)
            and url.startswith("sqlite:///")
            and not url.startswith("sqlite:////")
        ):
            rel = url.removeprefix("sqlite:///")
            if rel and rel != ":memory:":
                raw["store_url"] = "sqlite:///" + str(base / rel)
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            detail = format_validation_error(exc, sep="\n  - ", what="(top level)")
            raise ConfigError(f"{path}: invalid service config:\n  - {detail}") from None


def config_from_env(environ: Mapping[str, str]) -> ServeConfig:
    """The config of a service worker process: the TOML file named by `CONFIG_ENV` and the
    tokens from `ADMIN_TOKEN_ENV`, `READ_TOKEN_ENV` and `METRICS_TOKEN_ENV` (what `abrec serve --workers N` hands
    its workers).

    Raises:
        ConfigError: when `CONFIG_ENV` is unset or the file is invalid.
    """
    path = environ.get(CONFIG_ENV, "").strip()
    if not path:
        raise ConfigError(f"set {CONFIG_ENV} to the service TOML file")
    return ServeConfig.from_toml(path).model_copy(
        update={
            "admin_token": admin_token_from_env(environ),
            "read_token": read_token_from_env(environ),
            "metrics_token": metrics_token_from_env(environ),
        }
    )


def admin_token_from_env(environ: Mapping[str, str]) -> SecretStr | None:
    """The admin token in `ABREC_ADMIN_TOKEN` of `environ` (None when unset or blank)."""
    token = environ.get(ADMIN_TOKEN_ENV, "").strip()
    return SecretStr(token) if token else None


def read_token_from_env(environ: Mapping[str, str]) -> SecretStr | None:
    """The read token in `ABREC_READ_TOKEN` of `environ` (None when unset or blank)."""
    token = environ.get(READ_TOKEN_ENV, "").strip()
    return SecretStr(token) if token else None


def metrics_token_from_env(environ: Mapping[str, str]) -> SecretStr | None:
    """The metrics token in `ABREC_METRICS_TOKEN` of `environ` (None when unset or blank)."""
    token = environ.get(METRICS_TOKEN_ENV, "").strip()
    return SecretStr(token) if token else None


__all__ = [
    "ADMIN_TOKEN_ENV",
    "CONFIG_ENV",
    "METRICS_TOKEN_ENV",
    "READ_TOKEN_ENV",
    "BatchConfig",
    "ServeConfig",
    "admin_token_from_env",
    "config_from_env",
    "metrics_token_from_env",
    "read_token_from_env",
]
