"""Who may import whom (docs/ARCHITECTURE.md): a forbidden direction anywhere in a module fails here.

Every import statement counts, module-level or inside a function (lazy imports are still
dependencies), so the layering cannot be worked around by importing late.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# (importer package prefix, imported package prefix, why)
FORBIDDEN = [
    ("skinui", "training", "the library (the app included) never depends on the training package"),
    ("skinui.datasets", "skinui.models", "datasets yield Cases; they know nothing of models"),
    ("skinui.datasets", "skinui.ui", "datasets know nothing of the app"),
    ("skinui.explain", "skinui.ui", "explanations return arrays and numbers; the app draws them"),
    ("skinui.models", "skinui.ui", "models know nothing of the app"),
    ("skinui.models", "skinui.explain", "models know nothing of their explanations"),
    ("skinui.inference", "skinui.explain", "the prediction path does not depend on explanations"),
    ("skinui.trust", "skinui.ui", "trust measures return numbers and sentences; the app shows them"),
    ("skinui.trust", "skinui.explain", "the prediction path's trust measures do not depend on explanations"),
]
# Torch-free modules: the app's page, the audit and the reports' statistics load without torch.
TORCH_FREE = ["skinui.vocabulary", "skinui.paths", "skinui.schema", "skinui.stats", "skinui.evidence",
              "skinui.audit", "skinui.explain.methods", "skinui.explain.quality", "skinui.ui.cards", "skinui.ui.form",
              "skinui.trust.conformal", "skinui.trust.ood", "skinui.trust.uncertainty", "skinui.trust.words",
              "skinui.trust.quality"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str) -> set[str]:
    """Every module an import statement in `source` names (relative imports resolved against `module`)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(module: str, imported: set[str]) -> list[str]:
    return [f"{module} imports {name}: {why}" for src, dst, why in FORBIDDEN if _under(module, src)
            for name in sorted(imported) if _under(name, dst)]


MODULES = {module_name(p): p for root in ("skinui", "training") for p in sorted((REPO / root).rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_forbidden_import(module):
    assert violations(module, imports_of(MODULES[module].read_text(), module)) == []


@pytest.mark.parametrize("module", TORCH_FREE)
def test_torch_free_modules_do_not_import_torch(module):
    imported = imports_of(MODULES[module].read_text(), module)
    assert not [n for n in imported if n == "torch" or n.startswith("torch.")], module


def test_the_checker_catches_lazy_and_relative_imports():
    lazy = "def f():\n    from training.evaluate import report\n"
    assert violations("skinui.ui.compare_tab", imports_of(lazy, "skinui.ui.compare_tab"))
    relative = "from ..ui import figures\n"
    assert violations("skinui.explain.cam", imports_of(relative, "skinui.explain.cam"))
    assert violations("skinui.datasets.ham10000", imports_of("import skinui.models.encoders\n", "skinui.datasets.ham10000"))
    assert not violations("skinui.ui.app", imports_of("from skinui.explain import gradcam\n", "skinui.ui.app"))
