"""`abrec.train` sits below the models: it reads data and embed only; the models that fine-tune
inside `fit` (two-tower, re-ranker, L3AE, cross-encoder), the offline wiring ([encoder.finetune],
learning curves) and the CLI import it."""

from __future__ import annotations

from test_architecture import package_graph


def test_train_imports_only_the_stages_it_builds_on() -> None:
    used = set(package_graph().successors("train"))
    assert used, "the scan found no imports of abrec.train"
    allowed = {"data", "embed", "errors", "fmt", "jsonsafe"}
    assert used <= allowed, f"train imports {sorted(used - allowed)}"


def test_only_the_cli_the_offline_wiring_and_the_models_import_train() -> None:
    users = set(package_graph().predecessors("train"))
    assert users <= {"cli", "offline", "models"}, f"{sorted(users)} import abrec.train"
