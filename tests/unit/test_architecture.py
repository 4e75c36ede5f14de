"""The package graph documented in docs/architecture.md: no cycles, stats depends on nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "abrec"
#: Modules every package may use: they import nothing of ours (checked below).
LEAVES = {"errors", "fmt", "jsonsafe"}


def _package(module: str) -> str:
    """`abrec.stats.analysis` -> `stats`; `abrec.demo` -> `demo`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    """Every abrec module imported anywhere in `path` (including lazy, function-level imports)."""
    here = ".".join(("abrec", *path.relative_to(SRC).with_suffix("").parts))
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("abrec.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = here.split(".")[: -node.level]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            if mod.startswith("abrec."):
                out.add(mod)
    return out


def package_graph() -> nx.DiGraph:
    """Package -> packages it imports (self-edges dropped)."""
    g = nx.DiGraph()
    for path in SRC.rglob("*.py"):
        src = _package(".".join(("abrec", *path.relative_to(SRC).with_suffix("").parts)))
        g.add_node(src)
        for mod in _imports(path):
            dst = _package(mod)
            if dst and dst != src:
                g.add_edge(src, dst)
    return g


def test_package_graph_has_no_cycles() -> None:
    g = package_graph()
    assert len(g) > 10  # the scan found the packages
    cycles = list(nx.simple_cycles(g))
    assert not cycles, f"import cycles between packages: {cycles}"


def test_leaf_modules_import_nothing_of_ours() -> None:
    g = package_graph()
    for leaf in LEAVES:
        assert not set(g.successors(leaf)), f"{leaf} imports {sorted(g.successors(leaf))}"


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("stats", {"data", "embed", "models", "evaluation", "store", "experiment", "serve"}),
        ("models", {"serve", "store", "experiment", "offline", "demo", "cli", "evaluation"}),
        ("store", {"serve", "experiment", "models", "demo", "cli"}),
        ("experiment", {"serve", "demo", "cli", "offline"}),
        ("simulate", {"demo", "loop", "cli"}),
        ("loop", {"cli"}),
        ("monitor", {"serve", "cli", "demo", "simulate", "loop", "offline", "report"}),
        (
            "ope",
            {
                "models",
                "serve",
                "store",
                "experiment",
                "offline",
                "demo",
                "cli",
                "evaluation",
                "train",
            },
        ),
        (
            "interleave",
            {
                "data",
                "models",
                "serve",
                "store",
                "experiment",
                "offline",
                "simulate",
                "demo",
                "cli",
                "evaluation",
                "train",
            },
        ),
        (
            "bandit",
            {
                "data",
                "embed",
                "models",
                "evaluation",
                "train",
                "ope",
                "offline",
                "store",
                "experiment",
                "serve",
                "simulate",
                "report",
                "demo",
                "cli",
            },
        ),
        (
            "train",
            {"models", "evaluation", "offline", "serve", "store", "experiment", "demo", "cli"},
        ),
        (
            "scale",
            {"serve", "store", "experiment", "offline", "loop", "simulate", "demo", "cli"},
        ),
        (
            "artifacts",
            {
                "serve",
                "store",
                "experiment",
                "offline",
                "evaluation",
                "train",
                "loop",
                "simulate",
                "demo",
                "cli",
            },
        ),
    ],
)
def test_layering(package: str, forbidden: set[str]) -> None:
    """A stage never imports the stages built on it (docs/architecture.md, Layout)."""
    used = set(package_graph().successors(package))
    assert not used & forbidden, f"{package} imports {sorted(used & forbidden)}"


def test_nothing_imports_the_simulator_but_the_demo() -> None:
    """The service, store and models never import the simulator; only the simulated runs
    (the demo, the loop) and the report that describes them do."""
    users = set(package_graph().predecessors("simulate"))
    allowed = {"demo", "loop", "cli", "report"}
    assert users <= allowed, f"production code imports simulate: {sorted(users)}"


def test_every_internal_import_resolves() -> None:
    """No import of a module that does not exist (e.g. one left behind by a move)."""
    modules = {
        ".".join(("abrec", *p.relative_to(SRC).with_suffix("").parts)) for p in SRC.rglob("*.py")
    }
    modules |= {m.removesuffix(".__init__") for m in modules}
    missing = {
        (str(p.relative_to(SRC)), mod)
        for p in SRC.rglob("*.py")
        for mod in _imports(p)
        if mod not in modules
    }
    assert not missing, f"imports of missing modules: {sorted(missing)}"


def test_bandit_settings_import_stays_light() -> None:
    """The spec holds `BanditSettings`: importing it must not load scipy or the analysis."""
    import subprocess
    import sys

    code = (
        "import sys; from abrec.bandit import BanditSettings; "
        "print(any(m == 'scipy' or m.startswith(('scipy.', 'abrec.stats')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
