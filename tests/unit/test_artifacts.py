"""The model registry on disk (`abrec.artifacts`) and `abrec models`: content addressing,
metadata, the promoted pointer, and one-line errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from abrec.artifacts import (
    PROVENANCE_FILE,
    ArtifactError,
    ModelRegistry,
    bundle_digest,
    code_version,
    data_fingerprint,
)
from abrec.cli import app
from abrec.data.types import Interactions


def fake_bundle(
    path: Path, models: tuple[str, ...] = ("ease", "popularity"), blob: bytes = b"A"
) -> Path:
    """A folder with the files a bundle has (the registry never loads the models)."""
    for name in models:
        (path / "models" / name).mkdir(parents=True, exist_ok=True)
        (path / "models" / name / "state.bin").write_bytes(blob + name.encode())
    (path / "ids.npz").write_bytes(b"ids")
    (path / "bundle.json").write_text(json.dumps({"models": sorted(models)}))
    return path


def reference_digest(root: Path) -> str:
    """The documented digest, written out independently: per file in sorted path order,
    8-byte big-endian path length, path, 8-byte size, bytes."""
    h = hashlib.sha256()
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    for rel in files:
        data = (root / rel).read_bytes()
        h.update(len(rel.encode()).to_bytes(8, "big") + rel.encode())
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def inter(rows: list[tuple[int, int]], ratings: list[float] | None = None) -> Interactions:
    return Interactions(
        user_idx=np.array([r[0] for r in rows]),
        item_idx=np.array([r[1] for r in rows]),
        user_ids=np.array(["u0", "u1"], dtype=object),
        item_ids=np.array(["a", "b", "c"], dtype=object),
        ratings=None if ratings is None else np.array(ratings),
    )


def test_bundle_digest_matches_the_documented_reference(tmp_path: Path) -> None:
    b = fake_bundle(tmp_path / "b")
    assert bundle_digest(b) == reference_digest(b)
    (b / "models" / "ease" / "state.bin").write_bytes(b"changed")
    assert bundle_digest(b) == reference_digest(b)


def test_data_fingerprint_depends_on_every_part_of_the_data() -> None:
    base = data_fingerprint(inter([(0, 1), (1, 2)]))
    assert base == data_fingerprint(inter([(0, 1), (1, 2)]))
    assert len(base) == 64 and int(base, 16) >= 0
    others = {
        data_fingerprint(inter([(0, 1), (1, 0)])),  # another item
        data_fingerprint(inter([(1, 2), (0, 1)])),  # another order
        data_fingerprint(inter([(0, 1)])),  # fewer rows
        data_fingerprint(inter([(0, 1), (1, 2)], ratings=[1.0, 2.0])),  # ratings
        data_fingerprint(inter([(0, 1), (1, 2)], ratings=[1.0, 3.0])),
    }
    assert base not in others and len(others) == 5
    renamed = inter([(0, 1), (1, 2)])
    renamed = Interactions(
        renamed.user_idx,
        renamed.item_idx,
        renamed.user_ids,
        np.array(["a", "b", "x"], dtype=object),
    )
    assert data_fingerprint(renamed) != base


def test_register_is_content_addressed_and_records_metadata(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    b = fake_bundle(tmp_path / "b")
    v = reg.register(b, data_fingerprint="ab" * 32, config={"lambda": 10}, metrics={"ndcg@10": 0.3})
    assert v.version == bundle_digest(b)[:16]
    assert reg.register(b).version == v.version  # same files: same version, not a copy
    assert [x.version for x in reg.list()] == [v.version]
    assert bundle_digest(v.bundle) == bundle_digest(b)  # the copy is complete
    meta = reg.get(v.version).meta
    assert meta["models"] == ["ease", "popularity"]
    assert meta["data_fingerprint"] == "ab" * 32
    assert meta["config"] == {"lambda": 10} and meta["metrics"] == {"ndcg@10": 0.3}
    assert meta["code"]["abrec"] == code_version()["abrec"]
    assert meta["size_bytes"] == sum(p.stat().st_size for p in b.rglob("*") if p.is_file())
    other = reg.register(fake_bundle(tmp_path / "c", blob=b"B"))
    assert other.version != v.version
    assert {x.version for x in reg.list()} == {v.version, other.version}
    assert not [p for p in (tmp_path / "reg" / "versions").iterdir() if p.name.startswith(".")]


def test_register_reads_the_bundles_provenance(tmp_path: Path) -> None:
    b = fake_bundle(tmp_path / "b")
    doc = {"data_fingerprint": "cd" * 32, "config": {"name": "run"}, "metrics": {"m": 1.0}}
    (b / PROVENANCE_FILE).write_text(json.dumps(doc))
    meta = ModelRegistry(tmp_path / "reg").register(b, metrics={"given": 2.0}).meta
    assert meta["data_fingerprint"] == "cd" * 32 and meta["config"] == {"name": "run"}
    assert meta["metrics"] == {"given": 2.0}  # what the caller gives wins


def test_promote_replaces_the_pointer(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    assert reg.promoted() is None
    a = reg.register(fake_bundle(tmp_path / "a", blob=b"A")).version
    b = reg.register(fake_bundle(tmp_path / "b", blob=b"B")).version
    reg.promote(a)
    assert reg.promoted() == a
    reg.promote(b)
    assert reg.promoted() == b
    assert (tmp_path / "reg" / "PROMOTED").read_text() == b + "\n"
    assert not [p for p in (tmp_path / "reg").iterdir() if p.name.startswith(".promoted")]


@pytest.mark.parametrize("version", ["nothex", "0123456789abcdef", "../../etc/passwd"])
def test_unknown_or_malformed_versions_are_named_errors(tmp_path: Path, version: str) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    with pytest.raises(ArtifactError, match="model version"):
        reg.get(version)
    with pytest.raises(ArtifactError):
        reg.promote(version)
    assert reg.promoted() is None


def test_register_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(ArtifactError, match="not a model bundle"):
        ModelRegistry(tmp_path / "reg").register(tmp_path / "x")


def test_cli_register_list_show_promote(tmp_path: Path) -> None:
    runner = CliRunner()
    reg = str(tmp_path / "reg")
    b = fake_bundle(tmp_path / "b")
    metrics = tmp_path / "m.json"
    metrics.write_text('{"ndcg@10": 0.25}')
    out = runner.invoke(app, ["models", "register", str(b), "-r", reg, "--metrics", str(metrics)])
    assert out.exit_code == 0, out.output
    version = out.stdout.strip()
    assert version == bundle_digest(b)[:16]
    out = runner.invoke(app, ["models", "promote", version, "-r", reg])
    assert out.exit_code == 0 and version in out.stdout
    out = runner.invoke(app, ["models", "list", "-r", reg, "--json"])
    rows = json.loads(out.stdout)
    assert [(r["version"], r["promoted"]) for r in rows] == [(version, True)]
    out = runner.invoke(app, ["models", "show", version, "-r", reg])
    shown = json.loads(out.stdout)
    assert shown["metrics"] == {"ndcg@10": 0.25} and shown["promoted"] is True
    assert Path(shown["path"], "bundle.json").is_file()
    out = runner.invoke(app, ["models", "list", "-r", reg])
    assert out.exit_code == 0 and version in out.stdout and "*" in out.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["models", "show", "0123456789abcdef"],
        ["models", "promote", "nothex"],
        ["models", "register", "/nonexistent/bundle"],
    ],
)
def test_cli_mistakes_are_one_line_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    out = CliRunner().invoke(app, [*args, "-r", str(tmp_path / "reg")])
    assert out.exit_code == 2
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1


def test_cli_bad_metrics_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    b = fake_bundle(tmp_path / "b")
    out = CliRunner().invoke(
        app, ["models", "register", str(b), "-r", str(tmp_path / "reg"), "--metrics", str(bad)]
    )
    assert out.exit_code == 2 and out.stderr.count("\n") == 1 and "not valid" in out.stderr


def test_code_version_names_this_checkouts_commit() -> None:
    import subprocess

    import abrec

    here = Path(abrec.__file__).resolve().parent
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=False
    )
    got = code_version()
    assert got["abrec"] == abrec.__version__
    if head.returncode != 0:  # not a git checkout (an installed package)
        assert got["git_commit"] is None and got["git_dirty"] is None
    else:
        assert got["git_commit"] == head.stdout.strip()
        assert isinstance(got["git_dirty"], bool)
