"""The layers import downwards only: the core, data, evaluation and training modules know no method, and
only the CLI knows the benchmarks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "hyperadapt"
LOWER = ["core", "data", "evaluation", "report", "models.py", "encoders.py", "training.py", "io.py", "config.py"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("part", LOWER)
def test_lower_layers_import_no_method(part):
    files = [SRC / part] if part.endswith(".py") else sorted((SRC / part).rglob("*.py"))
    offenders = {
        f.relative_to(SRC).as_posix(): sorted(m for m in imported_modules(f) if m.startswith("hyperadapt.methods"))
        for f in files
    }
    assert not {k: v for k, v in offenders.items() if v}


def method_package_imports() -> set[tuple[str, str, str]]:
    """(package, the other method package it imports, file) for every import between method packages."""
    packages = [p.name for p in (SRC / "methods").iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    crossing = set()
    for pkg in packages:
        for f in (SRC / "methods" / pkg).rglob("*.py"):
            for m in imported_modules(f):
                parts = m.split(".")
                if m.startswith("hyperadapt.methods.") and len(parts) > 2 and parts[2] != pkg:
                    crossing.add((pkg, parts[2], f.relative_to(SRC / "methods" / pkg).as_posix()))
    return crossing


def test_method_packages_import_no_other_method_package_but_switch_builds_on_continual():
    # SwitchCIT is a continual learner: methods/switch imports methods/continual, and no other crossing is allowed
    assert {(pkg, other) for pkg, other, _ in method_package_imports()} <= {("switch", "continual")}


def test_continual_imports_no_method_package():
    assert not [c for c in method_package_imports() if c[0] == "continual"]
    files = sorted((SRC / "methods" / "continual").rglob("*.py"))
    assert files, "methods/continual/ is missing"
    upward = {f.name: sorted(m for m in imported_modules(f) if m == "hyperadapt.methods") for f in files}
    assert not {k: v for k, v in upward.items() if v}, "methods/continual imports the methods registry"


def test_benchmarks_are_a_top_layer_only_the_cli_imports_and_no_module_touches_sys_path():
    importers, path_edits = set(), set()
    for f in SRC.rglob("*.py"):
        rel = f.relative_to(SRC).as_posix()
        if not rel.startswith("benchmarks/") and any(
            m.startswith("hyperadapt.benchmarks") for m in imported_modules(f)
        ):
            importers.add(rel)
        tree = ast.parse(f.read_text(encoding="utf-8"))
        if any(
            isinstance(n, ast.Attribute) and n.attr == "path" and isinstance(n.value, ast.Name) and n.value.id == "sys"
            for n in ast.walk(tree)
        ):
            path_edits.add(rel)
    assert importers and all(name.startswith("cli/") for name in importers), importers
    assert not path_edits


def test_only_the_run_owner_names_the_run_record_and_serve_asks_no_method_what_it_has():
    naming = {f.relative_to(SRC).as_posix() for f in SRC.rglob("*.py") if "run.json" in f.read_text(encoding="utf-8")}
    # runs.py owns the record; the others only mention it in a docstring or a help text, never as a path
    for rel in naming - {"runs.py"}:
        tree = ast.parse((SRC / rel).read_text(encoding="utf-8"))
        literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value == "run.json"]
        assert not literals, f"{rel} builds a path to run.json itself: ask hyperadapt.runs"
    probes = {
        f.relative_to(SRC).as_posix()
        for f in (SRC / "serve").rglob("*.py")
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8")))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "hasattr"
    }
    assert not probes, f"serve/ probes methods with hasattr: {sorted(probes)}"
