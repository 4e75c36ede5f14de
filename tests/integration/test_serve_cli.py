"""`abrec serve`: configuration mistakes give one clear line and exit code 2."""

from __future__ import annotations

from pathlib import Path

from test_serve_support import build_bundle, write_config
from typer.testing import CliRunner

from abrec.cli import app


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["serve", *args])
    return result.exit_code, result.output


def test_missing_config_file(tmp_path: Path) -> None:
    code, out = run("--config", str(tmp_path / "nope.toml"))
    assert code == 2 and "does not exist" in out


def test_missing_bundle(tmp_path: Path) -> None:
    cfg = tmp_path / "serve.toml"
    cfg.write_text('bundle = "no_bundle_here"\n')
    code, out = run("--config", str(cfg))
    assert code == 2 and "not a model bundle" in out


def test_broken_experiments_file(tmp_path: Path) -> None:
    bundle, _ = build_bundle(tmp_path / "bundle")
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'e.db'}", bundle)
    (tmp_path / "experiments.toml").write_text("[[experiment]]\nid = \n")
    code, out = run("--config", str(cfg))
    assert code == 2 and "not valid TOML" in out
