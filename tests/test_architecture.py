"""The shape of the package, checked from its source: no import cycles, and the layering rules that keep each
concern in one place (checks never import each other, renderers never touch models, Evidence, the checks and
the gate never depend on a modality)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "audit"
PACKAGE = "transfer_audit"
HEAVY = ("torch", "transformers", "evidently", "captum", "fairlearn", "peft", "ray")


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if name.startswith(PACKAGE + ".") else None
    return rel is not None and ((SOURCE / rel).with_suffix(".py").exists() or (SOURCE / rel / "__init__.py").exists())


def _module_name(path: Path) -> str:
    rel = path.relative_to(SOURCE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGE, *parts])


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            # `from . import x` imports the submodule x (names that are not modules are attributes)
            out |= {f"{mod}.{a.name}" for a in node.names if _is_module(f"{mod}.{a.name}")}
    return out


MODULES = {_module_name(p): p for p in SOURCE.rglob("*.py")}


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    return {name: {m for m in _imports(path, top_level_only) if m in MODULES and m != name}
            for name, path in MODULES.items()}


def test_no_import_cycles_at_module_level():
    graph = _graph(top_level_only=True)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def _all_imports(name: str) -> set[str]:
    return _imports(MODULES[name], top_level_only=False)


MODEL_LOADERS = {f"{PACKAGE}.models.{m}" for m in ("loading", "finetune", "safety")}
CHECK_HELPERS = {"transfer_audit.checks.base", "transfer_audit.checks.common",
                 "transfer_audit.checks.counterfactual",   # counterfactual and bias_groups are the bias check's
                 "transfer_audit.checks.bias_groups"}      # helper modules


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(f"{PACKAGE}.checks.")))
def test_checks_do_not_import_each_other_or_a_modality(name):
    imported = _all_imports(name)
    others = {m for m in imported if m.startswith(f"{PACKAGE}.checks.") and m not in CHECK_HELPERS | {name}}
    assert not others, f"{name} imports other checks: {sorted(others)} (shared pieces belong in checks/common.py)"
    modality = {m for m in imported if m.startswith(f"{PACKAGE}.tasks") or m in MODEL_LOADERS}
    assert not modality, f"{name} depends on a modality or model loader: {sorted(modality)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(f"{PACKAGE}.render")))
def test_renderers_read_results_only(name):
    imported = _all_imports(name)
    bad = {m for m in imported if m.split(".")[0] in HEAVY or any(
        m.startswith(f"{PACKAGE}.{x}") for x in ("checks", "evidence", "tasks", "models", "runner", "gate"))}
    assert not bad, f"{name} imports {sorted(bad)}; renderers read results.json only"


@pytest.mark.parametrize("name", ["transfer_audit.evidence", "transfer_audit.gate", "transfer_audit.policy",
                                  "transfer_audit.controls", "transfer_audit.runner"])
def test_the_core_is_modality_free(name):
    imported = _all_imports(name)
    bad = {m for m in imported if m.startswith(f"{PACKAGE}.tasks.") and m != f"{PACKAGE}.tasks.base"}
    assert not bad, f"{name} imports a modality implementation: {sorted(bad)}"


def test_the_gate_is_pure():
    imported = _all_imports("transfer_audit.gate")
    bad = {m for m in imported if m.split(".")[0] in HEAVY + ("os", "pathlib", "io", "json") or
           m in {f"{PACKAGE}.fileio", f"{PACKAGE}.outputs", f"{PACKAGE}.render"}}
    assert not bad, f"the gate must not do I/O: it imports {sorted(bad)}"


def test_heavy_libraries_are_imported_lazily():
    for name, path in MODULES.items():
        top = _imports(path, top_level_only=True)
        heavy = {m for m in top if m.split(".")[0] in HEAVY}
        assert not heavy, f"{name} imports {sorted(heavy)} at module level; import inside the function that needs it"


def test_the_checker_sees_a_planted_cycle(tmp_path, monkeypatch):
    """The cycle finder itself can fail: two modules that import each other are reported."""
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("from . import a\n")
    monkeypatch.setattr(__import__(__name__), "SOURCE", tmp_path)
    modules = {_module_name(p): p for p in tmp_path.rglob("*.py")}
    monkeypatch.setattr(__import__(__name__), "MODULES", modules)
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_no_import_cycles_at_module_level()
