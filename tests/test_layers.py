"""The layout: import-linter's contracts hold and are real (a planted wrong import breaks them), no
import cycle among the library and the recipes (imports inside functions counted), a short top level,
and every folder saying what it may import."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the tree at root, not the installed package
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True)


def test_the_layer_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def copy_of_the_tree(tmp_path: Path) -> Path:
    for name in ("pipeline", "recipes"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_a_forbidden_import_inside_a_function_breaks_the_contracts(tmp_path):
    tree = copy_of_the_tree(tmp_path)
    with open(tree / "pipeline" / "data" / "words.py", "a", encoding="utf-8") as f:
        f.write("\n\ndef _planted():\n    from pipeline.training import trainer  # data must not import training\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "pipeline.data.words -> pipeline.training.trainer" in result.stdout
    assert "Layers look only down" in result.stdout and "BROKEN" in result.stdout


def test_the_library_importing_a_recipe_breaks_the_contracts(tmp_path):
    tree = copy_of_the_tree(tmp_path)
    with open(tree / "pipeline" / "planning" / "compare.py", "a", encoding="utf-8") as f:
        f.write("\n\ndef _planted():\n    import recipes.sequence_classification\n")
    result = lint_imports(tree)
    assert result.returncode != 0 and "pipeline.planning.compare -> recipes.sequence_classification" in result.stdout


def cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph.find_modules_directly_imported_by(module) & modules:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_counting_imports_inside_functions():
    sys.path.insert(0, str(ROOT))
    try:
        graph = grimp.build_graph("pipeline", "recipes", cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))
    assert graph.direct_import_exists(importer="pipeline.api", imported="pipeline.training.loops")  # a function's
    assert cycles(graph, set(graph.modules)) == []


def test_a_short_top_level_and_every_folder_says_what_it_may_import():
    top = sorted(p.name for p in (ROOT / "pipeline").glob("*.py"))
    assert len(top) <= 8, top
    folders = [p for p in (ROOT / "pipeline").iterdir() if (p / "__init__.py").exists()]
    assert len(folders) >= 7
    for folder in folders:
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "May import" in doc, folder
