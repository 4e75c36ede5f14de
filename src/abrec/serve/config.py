"""Service configuration: a pydantic model read from a TOML file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from abrec.errors import ConfigError

ADMIN_TOKEN_ENV = "ABREC_ADMIN_TOKEN"


class BatchConfig(BaseModel):
    """How the event writer groups events into transactions."""

    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(default=500, ge=1, le=100_000)
    max_delay_s: float = Field(default=0.005, ge=0.0, le=10.0)


class ServeConfig(BaseModel):
    """Everything `abrec serve` needs: store, model bundle, experiments, limits."""

    model_config = ConfigDict(extra="forbid")

    store_url: str = "sqlite:///runs/events.db"
    bundle: Path
    experiments: Path | None = None
    fallback_model: str | None = None
    max_k: int = Field(default=100, ge=1, le=10_000)
    max_events_per_request: int = Field(default=10_000, ge=1)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    table_prefix: str = "abrec_"

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
            raise ConfigError(f"{path}: invalid service config:\n{exc}") from exc

    @staticmethod
    def admin_token() -> str | None:
        """The admin bearer token from `ABREC_ADMIN_TOKEN` (None disables admin routes)."""
        token = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
        return token or None
