"""The package's shape: data flows one way with no import circle, modules and functions stay readable."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bonetumor

PACKAGE = Path(bonetumor.__file__).parent
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 80
#: Lower layers never import higher ones (data → modeling → engine → evaluation → pipeline → commands).
LAYERS = {"data": 1, "preprocess": 1, "modeling": 2, "architecture": 2, "engine": 3, "evaluation": 4,
          "predict": 4, "pipeline": 5, "baselines": 5, "ablations": 5, "benchmark": 5, "reporting": 6, "paper": 7,
          "commands": 8, "train": 8, "cli": 9}


def _modules() -> dict[str, Path]:
    out = {}
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = file
    return out


def _imports(file: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Every bonetumor module ``file`` imports, at the top or inside a function."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def _graph():
    modules = _modules()
    return {name: _imports(file, name, modules) for name, file in modules.items()}


def _layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_no_import_circle():
    graph = _graph()
    # a package's __init__ re-exporting its own submodules is not a circle through them
    edges = {m: {d for d in deps if not (m.startswith(d + ".") and PACKAGE.joinpath(*d.split(".")[1:]).is_dir())}
             for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                pytest.fail("import circle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_lower_layers_never_import_higher_ones():
    wrong = []
    for m, deps in _graph().items():
        for d in deps:
            lm, ld = _layer(m), _layer(d)
            if lm is not None and ld is not None and ld > lm:
                wrong.append(f"{m} imports {d}")
    assert not wrong, wrong


def test_modules_and_functions_stay_readable():
    too_long = []
    for name, file in _modules().items():
        text = file.read_text()
        lines = len(text.splitlines())
        doc = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_MODULE_LINES and "longer than" not in doc:
            too_long.append(f"module {name}: {lines} lines (its docstring gives no reason)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {n} lines")
    assert not too_long, too_long
