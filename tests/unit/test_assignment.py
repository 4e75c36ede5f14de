"""GrowthBook-compatible hashing, bucket ranges and variation choice.

Test vectors are copied from the GrowthBook SDK conformance suite ``cases.json``
(github.com/growthbook/growthbook, packages/sdk-js/test/cases.json; the same file ships
as growthbook/growthbook-python tests/cases.json): sections "hash", "getBucketRange",
"chooseVariation", "inNamespace" (which hashes ``"__" + namespace`` with version 1) and
the "bucket" values of the "feature" experiment cases.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from abrec.experiment.assignment import (
    choose_variation,
    choose_variation_many,
    fnv1a32,
    gb_hash,
    gb_hash_many,
    get_bucket_ranges,
    get_equal_weights,
    in_range,
)

# cases.json "hash": [seed, value, version, expected]
HASH_CASES = [
    ("", "a", 1, 0.22),
    ("", "b", 1, 0.077),
    ("b", "a", 1, 0.946),
    ("ef", "d", 1, 0.652),
    ("asdf", "8952klfjas09ujk", 1, 0.549),
    ("", "123", 1, 0.011),
    ("", '___)((*":&', 1, 0.563),
    ("seed", "a", 2, 0.0505),
    ("seed", "b", 2, 0.2696),
    ("foo", "ab", 2, 0.2575),
    ("foo", "def", 2, 0.2019),
    ("89123klj", "8952klfjas09ujkasdf", 2, 0.124),
    ("90850943850283058242805", "123", 2, 0.7516),
    ("()**(%$##$%#$#", '___)((*":&', 2, 0.0128),
    ("abc", "def", 99, None),
]

# cases.json "feature": experiment rules bucket the hash attribute with seed = feature key.
FEATURE_BUCKET_CASES = [
    ("feature", "123", 1, 0.863),  # "empty experiment rule - c"
    ("feature", "456", 1, 0.178),  # "empty experiment rule - a"
    ("feature", "fds", 1, 0.514),  # "empty experiment rule - b"
    ("feature", "123", 2, 0.5231),  # "creates experiments properly"
]

# cases.json "inNamespace": [user id, [namespace, start, end], expected]
NAMESPACE_CASES = [
    ("1", ("namespace1", 0, 0.4), False),
    ("1", ("namespace1", 0.4, 1), True),
    ("1", ("namespace2", 0, 0.4), False),
    ("1", ("namespace2", 0.4, 1), True),
    ("2", ("namespace1", 0, 0.4), False),
    ("2", ("namespace1", 0.4, 1), True),
    ("2", ("namespace2", 0, 0.4), False),
    ("2", ("namespace2", 0.4, 1), True),
    ("3", ("namespace1", 0, 0.4), False),
    ("3", ("namespace1", 0.4, 1), True),
    ("3", ("namespace2", 0, 0.4), True),
    ("3", ("namespace2", 0.4, 1), False),
    ("4", ("namespace1", 0, 0.4), False),
    ("4", ("namespace1", 0.4, 1), True),
    ("4", ("namespace2", 0, 0.4), True),
    ("4", ("namespace2", 0.4, 1), False),
]

# cases.json "getBucketRange": [name, [numVariations, coverage, weights], expected]
BUCKET_RANGE_CASES = [
    ("normal 50/50", (2, 1, None), [(0, 0.5), (0.5, 1)]),
    ("reduced coverage", (2, 0.5, None), [(0, 0.25), (0.5, 0.75)]),
    ("zero coverage", (2, 0, None), [(0, 0), (0.5, 0.5)]),
    ("4 variations", (4, 1, None), [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1)]),
    ("uneven weights", (2, 1, [0.4, 0.6]), [(0, 0.4), (0.4, 1)]),
    ("uneven weights, 3 variations", (3, 1, [0.2, 0.3, 0.5]), [(0, 0.2), (0.2, 0.5), (0.5, 1)]),
    (
        "uneven weights, reduced coverage, 3 variations",
        (3, 0.2, [0.2, 0.3, 0.5]),
        [(0, 0.04), (0.2, 0.26), (0.5, 0.6)],
    ),
    ("negative coverage", (2, -0.2, None), [(0, 0), (0.5, 0.5)]),
    ("coverage above 1", (2, 1.5, None), [(0, 0.5), (0.5, 1)]),
    ("weights sum below 1", (2, 1, [0.4, 0.1]), [(0, 0.5), (0.5, 1)]),
    ("weights sum above 1", (2, 1, [0.7, 0.6]), [(0, 0.5), (0.5, 1)]),
    (
        "weights.length not equal to num variations",
        (4, 1, [0.4, 0.4, 0.2]),
        [(0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1)],
    ),
    ("weights sum almost equals 1", (2, 1, [0.4, 0.5999]), [(0, 0.4), (0.4, 0.9999)]),
]

EVEN = [(0, 0.5), (0.5, 1)]
REDUCED = [(0, 0.25), (0.5, 0.75)]
# cases.json "chooseVariation": [name, n, ranges, expected]
CHOOSE_CASES = [
    ("even range, 0.2", 0.2, EVEN, 0),
    ("even range, 0.4", 0.4, EVEN, 0),
    ("even range, 0.6", 0.6, EVEN, 1),
    ("even range, 0.8", 0.8, EVEN, 1),
    ("even range, 0", 0, EVEN, 0),
    ("even range, 0.5", 0.5, EVEN, 1),
    ("reduced range, 0.2", 0.2, REDUCED, 0),
    ("reduced range, 0.4", 0.4, REDUCED, -1),
    ("reduced range, 0.6", 0.6, REDUCED, 1),
    ("reduced range, 0.8", 0.8, REDUCED, -1),
    ("reduced range, 0.25", 0.25, REDUCED, -1),
    ("reduced range, 0.5", 0.5, REDUCED, 1),
    ("zero range", 0.5, [(0, 0.5), (0.5, 0.5), (0.5, 1)], 2),
]


def test_fnv1a32_reference_values() -> None:
    # Offset basis and Landon Curt Noll's published FNV-1a 32-bit test values.
    assert fnv1a32("") == 0x811C9DC5
    assert fnv1a32("a") == 0xE40C292C
    assert fnv1a32("foobar") == 0xBF9CF968


@pytest.mark.parametrize(
    ("seed", "value", "version", "expected"), HASH_CASES + FEATURE_BUCKET_CASES
)
def test_hash_vectors(seed: str, value: str, version: int, expected: float | None) -> None:
    assert gb_hash(seed, value, version) == expected
    if expected is not None:
        assert gb_hash_many(seed, [value, value], version).tolist() == [expected, expected]


@pytest.mark.parametrize(("user", "namespace", "expected"), NAMESPACE_CASES)
def test_namespace_vectors(user: str, namespace: tuple[str, float, float], expected: bool) -> None:
    n = gb_hash("__" + namespace[0], user, 1)
    assert n is not None
    assert in_range(n, (namespace[1], namespace[2])) is expected


@pytest.mark.parametrize(("name", "args", "expected"), BUCKET_RANGE_CASES)
def test_bucket_range_vectors(
    name: str, args: tuple[int, float, list[float] | None], expected: list[tuple[float, float]]
) -> None:
    got = get_bucket_ranges(*args)
    assert len(got) == len(expected), name
    for (a, b), (c, d) in zip(got, expected, strict=True):
        assert a == pytest.approx(c, abs=1e-9) and b == pytest.approx(d, abs=1e-9), name


@pytest.mark.parametrize(("name", "n", "ranges", "expected"), CHOOSE_CASES)
def test_choose_variation_vectors(
    name: str, n: float, ranges: list[tuple[float, float]], expected: int
) -> None:
    assert choose_variation(n, ranges) == expected, name
    assert choose_variation_many(np.array([n]), ranges).tolist() == [expected], name


def test_equal_weights() -> None:
    # cases.json "getEqualWeights"
    assert get_equal_weights(-1) == [] and get_equal_weights(0) == []
    assert get_equal_weights(1) == [1.0] and get_equal_weights(4) == [0.25] * 4
    assert get_equal_weights(3) == pytest.approx([0.33333333] * 3, abs=1e-8)


def test_unicode_hash_uses_utf16_code_units() -> None:
    # JavaScript hashes UTF-16 code units: an astral character is two surrogates.
    h = 0x811C9DC5
    for unit in (0xD83D, 0xDE00):  # "😀"
        h = ((h ^ unit) * 0x01000193) & 0xFFFFFFFF
    assert fnv1a32("😀") == h
    values = ["é", "日本", "😀x", "plain"]
    for version in (1, 2):
        assert gb_hash_many("s", values, version).tolist() == [
            gb_hash("s", v, version) for v in values
        ]
    with pytest.raises(ValueError, match="version"):
        gb_hash_many("s", values, 3)


def test_vectorised_hash_equals_scalar() -> None:
    rng = np.random.default_rng(0)
    ids = [f"user-{i}" for i in rng.integers(0, 10**12, size=2000)] + ["", "0", "a" * 40]
    for version in (1, 2):
        fast = gb_hash_many("exp-seed", ids, version)
        slow = [gb_hash("exp-seed", v, version) for v in ids]
        assert fast.tolist() == slow
    assert gb_hash_many("s", [], 2).shape == (0,)


@pytest.fixture(scope="module")
def million_hashes() -> dict[int, np.ndarray]:
    """Hashes of 1,000,000 distinct unit ids under both hash versions (computed once)."""
    ids = [f"user-{i}" for i in range(1_000_000)]
    return {v: gb_hash_many("homepage-recs", ids, v) for v in (1, 2)}


@pytest.mark.parametrize(
    ("version", "weights"),
    [(2, [0.5, 0.5]), (2, [1 / 3, 1 / 3, 1 / 3]), (2, [0.2, 0.3, 0.5]), (1, [0.5, 0.5])],
)
def test_uniform_assignment_over_a_million_ids(
    million_hashes: dict[int, np.ndarray], version: int, weights: list[float]
) -> None:
    n = million_hashes[version]
    assert n.shape == (1_000_000,)
    ranges = get_bucket_ranges(len(weights), 1.0, weights)
    arms = choose_variation_many(n, ranges)
    assert (arms >= 0).all()
    observed = np.bincount(arms, minlength=len(weights))
    expected = np.array(weights) * len(n)
    p = stats.chisquare(observed, expected).pvalue
    assert p > 0.001, (observed, p)  # no sample-ratio mismatch


def test_coverage_keeps_units_nested() -> None:
    # Raising coverage only adds units: everyone in at 40 % stays in the same arm at 100 %.
    ids = [f"u{i}" for i in range(20_000)]
    n = gb_hash_many("cov", ids, 2)
    low = choose_variation_many(n, get_bucket_ranges(2, 0.4, [0.5, 0.5]))
    full = choose_variation_many(n, get_bucket_ranges(2, 1.0, [0.5, 0.5]))
    inside = low >= 0
    assert abs(inside.mean() - 0.4) < 0.02
    assert (low[inside] == full[inside]).all()
