"""Issue 9: the one printable-id rule, bounded event timestamps, strict event types and
spec weights that always normalise (validated on write with the rules used on read)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from abrec.errors import ExperimentError
from abrec.experiment.spec import ExperimentSpec, parse_spec
from abrec.store.events import MAX_ID_LENGTH, TS_MAX, TS_MIN, Event, printable_id

BAD_IDS = {
    "empty": "",
    "spaces": "   ",
    "nul": "a\x00b",
    "control": "a\x01b",
    "del": "a\x7fb",
    "newline": "a\nb",
    "rtl override (Cf)": "a\u202eb",
    "rtl mark (Cf)": "\u200fab",
    "zero-width space (Cf)": "a\u200bb",
    "bom (Cf)": "\ufeffab",
    "lone surrogate (Cs)": "a\ud800b",
    "private use (Co)": "a\ue000b",
    "line separator (Zl)": "a\u2028b",
    "no-break space": "a\u00a0b",
    "ideographic space": "\u3000",
    "too long": "x" * (MAX_ID_LENGTH + 1),
}


@pytest.mark.parametrize("value", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_printable_id_rejects(value: str) -> None:
    with pytest.raises(ValueError) as info:
        printable_id(value)
    message = str(info.value)
    assert len(message) < 200
    if len(value) > 2:
        assert value not in message  # never echoes the id


@pytest.mark.parametrize(
    "value", ["u1", "a b", "visitor-7f3a", "ユーザー", "émile", "x" * MAX_ID_LENGTH, "a:b/c"]
)
def test_printable_id_accepts(value: str) -> None:
    assert printable_id(value) == value


def test_printable_id_names_the_code_point() -> None:
    with pytest.raises(ValueError, match=r"U\+202E.*Cf.*position 1"):
        printable_id("a\u202eb")


BASE = {"event_id": "e1", "experiment": "x", "variant": "a", "unit_id": "u", "type": "click"}


@pytest.mark.parametrize(
    "ts",
    [
        "9999-12-31T23:00:00-14:00",  # overflowed on conversion to UTC (was a 500)
        "0001-01-01T00:00:00+14:00",
        "1969-12-31T23:59:59Z",
        "9000-01-01T00:00:00Z",
        "8999-12-31T23:00:00-14:00",  # after 9000-01-01 in UTC
        1_700_000_000,  # numbers are not timestamps
        True,
    ],
)
def test_event_ts_out_of_range_is_a_validation_error(ts: object) -> None:
    with pytest.raises(ValidationError) as info:
        Event.model_validate({**BASE, "ts": ts})
    (err,) = info.value.errors(include_input=False)
    assert err["loc"] == ("ts",)


@pytest.mark.parametrize(
    ("ts", "utc"),
    [
        ("1970-01-01T00:00:00Z", TS_MIN),
        ("1970-01-01T01:00:00+01:00", TS_MIN),
        ("8999-12-31T23:59:59Z", datetime(8999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("2024-05-01T12:00:00-02:00", datetime(2024, 5, 1, 14, tzinfo=UTC)),
    ],
)
def test_event_ts_in_range_is_utc(ts: str, utc: datetime) -> None:
    got = Event.model_validate({**BASE, "ts": ts}).ts
    assert got == utc and got.utcoffset() is not None and got.utcoffset().total_seconds() == 0
    assert TS_MIN <= got < TS_MAX


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("position", "3"),
        ("position", True),
        ("position", 1.5),
        ("value", "1.0"),
        ("value", False),
        ("value", math.nan),
        ("value", math.inf),
        ("unit_id", 42),
        ("item_id", "i\u202e1"),
        ("item_id", "i\x001"),
        ("request_id", "r\x07"),
        ("request_id", "   "),
        ("unit_id", "   "),
        ("variant", "\u200e"),
    ],
)
def test_event_fields_are_strict(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        Event.model_validate({**BASE, field: value})
    assert [e["loc"] for e in info.value.errors(include_input=False)] == [(field,)]


def test_event_accepts_json_numbers() -> None:
    e = Event.model_validate({**BASE, "position": 3, "value": 2, "type": "covariate"})
    assert e.position == 3 and e.value == 2.0 and isinstance(e.value, float)


def _spec(weights: list[object], **kw: object) -> dict[str, object]:
    variants = [{"name": f"v{i}", "weight": w, "model": "m"} for i, w in enumerate(weights)]
    return {"id": "exp", "variants": variants, **kw}


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1e308, 1e308], "sum to infinity"),  # normalised to 0.0 each before the fix
        ([1.7e308, 1.7e308, 1.7e308], "sum to infinity"),
        ([10**400, 1], "valid number"),
        ([0, 0], "sum to 0"),
        ([math.nan, 1], "finite"),
        ([math.inf, 1], "finite"),
        ([-1, 2], "greater than or equal to 0"),
        (["1", 1], "valid number"),
        ([True, 1], "valid number"),
    ],
)
def test_bad_weights_are_rejected(weights: list[object], match: str) -> None:
    with pytest.raises(ExperimentError, match=match):
        parse_spec(_spec(weights))


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ([1, 1], [0.5, 0.5]),
        ([1, 3], [0.25, 0.75]),
        ([5e-324, 0], [1.0, 0.0]),
        ([1e307, 1e307, 2e307], [0.25, 0.25, 0.5]),
        ([0.1, 0.2, 0.7], [0.1, 0.2, 0.7]),
    ],
)
def test_good_weights_normalise_and_round_trip(weights: list[float], expected: list[float]) -> None:
    spec = parse_spec(_spec(weights))
    assert spec.weights == pytest.approx(expected, rel=1e-12)
    assert math.fsum(spec.weights) == pytest.approx(1.0, abs=1e-12)
    # what is stored (JSON) loads again with the same rules, to the same spec
    again = parse_spec(json.loads(json.dumps(spec.model_dump(mode="json"))))
    assert again == spec


@pytest.mark.parametrize(
    "variant",
    [
        {"name": "a\x00", "model": "m"},
        {"name": "a\u202e", "model": "m"},
        {"name": "   ", "model": "m"},
        {"name": "", "model": "m"},
        {"name": "x" * 129, "model": "m"},
        {"name": "ok", "model": "m\x01"},
        {"name": "ok", "model": " "},
    ],
)
def test_variant_and_model_names_follow_the_id_rule(variant: dict[str, object]) -> None:
    data = {"id": "exp", "variants": [variant, {"name": "b", "model": "m"}]}
    with pytest.raises(ValidationError):
        ExperimentSpec.model_validate(data)


@pytest.mark.parametrize("exp_id", ["a\x00", "a b", " ", "", "x" * 129, "a/b", "é"])
def test_experiment_ids_are_url_safe(exp_id: str) -> None:
    with pytest.raises(ExperimentError):
        parse_spec({"id": exp_id, "variants": [{"name": "a", "model": "m"}] * 2})


@pytest.mark.parametrize(
    ("field", "value"),
    [("planned_units", "100"), ("planned_units", True), ("coverage", "1"), ("alpha", math.nan)],
)
def test_spec_numbers_are_strict(field: str, value: object) -> None:
    with pytest.raises(ExperimentError, match=field):
        parse_spec({**_spec([1, 1]), field: value})
