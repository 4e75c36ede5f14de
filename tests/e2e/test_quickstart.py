"""The README quick start: its commands exist as Makefile targets."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^#+\s*quick[ -]?start.*?$(.*?)(?=^#+\s|\Z)", text, re.I | re.M | re.S)
    assert match, "README.md needs a 'Quick start' section"
    blocks = re.findall(r"```[a-z]*\n(.*?)```", match.group(1), re.S)
    lines = [ln.strip().removeprefix("$ ").strip() for b in blocks for ln in b.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", makefile, re.M))


def test_readme_quickstart_is_make_demo_and_make_test() -> None:
    commands = _quickstart_commands()
    assert "make demo" in commands and "make test" in commands, commands
    targets = _make_targets()
    for cmd in commands:
        if cmd.startswith("make"):
            for target in cmd.split()[1:]:
                if "=" not in target and not target.startswith("-"):
                    assert target in targets, f"README runs `{cmd}` but Makefile has no {target!r}"


def test_make_demo_runs_abrec_demo() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^demo\s*:.*?\n((?:\t.*\n?)+)", makefile, re.M)
    assert recipe and "abrec demo" in recipe.group(1)
