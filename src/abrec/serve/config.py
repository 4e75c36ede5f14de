"""Service configuration: a pydantic model read from a TOML file, plus the admin token.

The admin token is part of the configuration (`ServeConfig.admin_token`, a `SecretStr`
that never shows in a repr or a log) and is handed to `create_app` with the rest of it.
It is not read from the TOML file (secrets do not belong in config files): `abrec serve`
takes it from the `ABREC_ADMIN_TOKEN` environment variable (`admin_token_from_env`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from abrec.errors import ConfigError, format_validation_error

ADMIN_TOKEN_ENV = "ABREC_ADMIN_TOKEN"


class BatchConfig(BaseModel):
    """How the event writer groups events into transactions."""

    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(default=500, ge=1, le=100_000)
    max_delay_s: float = Field(default=0.005, ge=0.0, le=10.0)


class ServeConfig(BaseModel):
    """Everything `abrec serve` needs: store, model bundle, experiments, limits, admin token."""

    model_config = ConfigDict(extra="forbid")

    store_url: str = "sqlite:///runs/events.db"
    bundle: Path
    experiments: Path | None = None
    fallback_model: str | None = None
    max_k: int = Field(default=100, ge=1, le=10_000)
    max_events_per_request: int = Field(default=10_000, ge=1)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    table_prefix: str = "abrec_"
    admin_token: SecretStr | None = Field(
        default=None,
        min_length=1,
        description="bearer token of the admin routes; None disables them (401)",
    )

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
        if "admin_token" in raw:
            raise ConfigError(
                f"{path}: admin_token does not belong in a config file; "
                f"set the {ADMIN_TOKEN_ENV} environment variable of `abrec serve` instead"
            )
        base = path.resolve().parent
        for key in ("bundle", "experiments"):
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


def admin_token_from_env(environ: Mapping[str, str]) -> SecretStr | None:
    """The admin token in `ABREC_ADMIN_TOKEN` of `environ` (None when unset or blank)."""
    token = environ.get(ADMIN_TOKEN_ENV, "").strip()
    return SecretStr(token) if token else None


__all__ = ["ADMIN_TOKEN_ENV", "BatchConfig", "ServeConfig", "admin_token_from_env"]
