"""Request and response bodies of the HTTP API (they define its OpenAPI schema).

Request bodies are strict: JSON numbers only where numbers are expected (no `"3"`, no
`true` for an int), and every id follows `abrec.store.events.printable_id`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from abrec.store.events import printable_id

ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Ids are non-empty printable strings (no control characters; the full rule is
`abrec.store.events.printable_id`, which exposures must also pass)."""


class RecommendContext(BaseModel):
    """Optional request context: items the unit interacted with (external ids)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    history: list[Annotated[str, Field(max_length=256), AfterValidator(printable_id)]] = Field(
        default_factory=list, max_length=1000
    )


class RecommendRequest(BaseModel):
    """Ask for `k` recommendations for `unit_id` inside `experiment`."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"unit_id": "42", "experiment": "ease-vs-popularity", "k": 10},
                {
                    "unit_id": "visitor-7f3a",
                    "experiment": "ease-vs-popularity",
                    "k": 5,
                    "context": {"history": ["1", "260", "1196"]},
                },
            ]
        },
    )

    unit_id: str = Field(min_length=1, max_length=256, pattern=ID_PATTERN)
    experiment: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    k: int = Field(default=10, ge=1, description="Number of items (1..max_k of the service config)")
    context: RecommendContext | None = None

    _printable = field_validator("unit_id", "experiment")(printable_id)


class RecommendedItem(BaseModel):
    item_id: str
    position: int = Field(ge=0, description="0-based rank")
    score: float = Field(
        description="the model's score; in an interleaved list, the score of the first "
        "variant whose ranking holds the item"
    )
    source: str | None = Field(
        default=None,
        description="interleaving experiments: the ranker credited for this item "
        "(team-draft, multileave) or its ranks in each ranker (balanced)",
    )


class RecommendResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    request_id: str
    experiment: str
    variant: str | None = Field(
        description="Assigned variant; null when the experiment is unknown, not running, "
        "or the unit is outside its coverage (then the fallback model answers and no "
        "exposure is logged)"
    )
    model: str = Field(
        description="the model that ranked the list; for an interleaved list the variants' "
        "models joined by '+'"
    )
    model_version: str | None = Field(
        default=None,
        description="the model registry version that served the list (null when the service "
        "serves a bundle folder); every exposure of the list stores it",
    )
    items: list[RecommendedItem]


#: An events reply lists at most this many per-event errors (`rejected` counts them all).
MAX_EVENT_ERRORS = 20
_MAX_MESSAGE = 500


class EventProblem(BaseModel):
    """Why one event of a batch was refused: 422 (invalid) or 409 (event_id taken)."""

    index: int
    message: str
    status: int = Field(default=422, description="422 invalid event, 409 event_id conflict")

    @field_validator("message")
    @classmethod
    def _short(cls, message: str) -> str:
        return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"


class EventsReply(BaseModel):
    """Outcome of a batch: `errors` holds the first `MAX_EVENT_ERRORS` refused events
    (by index); `rejected` is the number of refused events (all of them)."""

    accepted: int
    inserted: int
    rejected: int = Field(default=0, description="events refused (all, even beyond the list)")
    errors: list[EventProblem] = Field(
        default_factory=list, description=f"the first {MAX_EVENT_ERRORS} errors, by index"
    )

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("errors"), list):
            data = dict(data)
            data.setdefault("rejected", len(data["errors"]))
            data["errors"] = data["errors"][:MAX_EVENT_ERRORS]
        return data


Weight = Annotated[float, Field(ge=0.0, allow_inf_nan=False, strict=True)]


class WeightsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"weights": {"control": 0.8, "treatment": 0.2}}]},
    )

    weights: dict[
        Annotated[str, Field(min_length=1, max_length=128), AfterValidator(printable_id)],
        Weight,
    ] = Field(min_length=1, max_length=100)


class ValidationIssue(BaseModel):
    """One reason a request failed validation: where, what, and the error type."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """422 body of a request that failed validation; the input is never echoed."""

    detail: list[ValidationIssue]
    more_errors: int | None = Field(default=None, description="errors beyond those listed")


class Problem(BaseModel):
    """Error body: `detail` says what went wrong and what to do."""

    detail: Any


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with its local `$defs` references inlined, so it can sit inside
    the OpenAPI document (for routes that parse their body themselves)."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out = walk(schema)
    assert isinstance(out, dict)
    return out
