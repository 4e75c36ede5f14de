"""`abrec.train` sits beside the models: it reads data, embed and evaluation, and only the CLI
imports it (so the model registry may import it lazily later without a cycle)."""

from __future__ import annotations

from test_architecture import package_graph


def test_train_imports_only_the_stages_it_builds_on() -> None:
    used = set(package_graph().successors("train"))
    assert used, "the scan found no imports of abrec.train"
    allowed = {"data", "embed", "evaluation", "errors", "fmt", "jsonsafe"}
    assert used <= allowed, f"train imports {sorted(used - allowed)}"


def test_only_the_cli_imports_train() -> None:
    users = set(package_graph().predecessors("train"))
    assert users <= {"cli"}, f"{sorted(users)} import abrec.train"
