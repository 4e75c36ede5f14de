"""`abrec serve`: configuration mistakes give one clear line and exit code 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def test_admin_token_comes_from_the_environment_only(tmp_path: Path, monkeypatch: Any) -> None:
    import uvicorn

    bundle, _ = build_bundle(tmp_path / "bundle")
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'e.db'}", bundle)
    apps: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    monkeypatch.setenv("ABREC_ADMIN_TOKEN", " s3cret-token ")
    assert run("--config", str(cfg))[0] == 0
    served = apps[-1].state.config
    assert served.admin_token.get_secret_value() == "s3cret-token"
    assert "s3cret" not in repr(served) and "s3cret" not in served.model_dump_json()
    monkeypatch.delenv("ABREC_ADMIN_TOKEN")
    assert run("--config", str(cfg))[0] == 0
    assert apps[-1].state.config.admin_token is None
    cfg.write_text(cfg.read_text().replace("[batch]", 'admin_token = "in-file"\n[batch]'))
    code, out = run("--config", str(cfg))
    assert code == 2 and "ABREC_ADMIN_TOKEN" in out and "in-file" not in out
