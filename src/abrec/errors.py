"""Named exceptions shared by every stage; each message tells the user what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class AbrecError(Exception):
    """Base class for every error abrec raises on purpose."""


class DataError(AbrecError, ValueError):
    """Input data is missing, malformed or inconsistent."""


class DatasetUnavailableError(AbrecError, FileNotFoundError):
    """A dataset is neither under ABREC_DATA nor downloadable."""


class ConfigError(AbrecError, ValueError):
    """A configuration file or value is invalid."""


class NotFittedError(AbrecError, RuntimeError):
    """A model was used before `fit` or `load`."""


class StoreError(AbrecError, RuntimeError):
    """The event store could not complete an operation."""


class ExperimentError(AbrecError, ValueError):
    """An experiment spec or state change is invalid."""


def format_validation_error(
    exc: ValidationError, *, sep: str = "; ", what: str = "value", hint: str | None = None
) -> str:
    """One readable message for a pydantic ``ValidationError``: ``loc: message`` per error.

    The offending input is never echoed (it may be huge or unprintable). Unknown keys and
    missing keys get plain-language messages; ``hint`` is appended to unknown-key messages.
    """
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or what
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling" + (f"; {hint})" if hint else ")")
        elif err["type"] == "missing":
            msg = "required key is missing"
        parts.append(f"{loc}: {msg}")
    return sep.join(parts)
