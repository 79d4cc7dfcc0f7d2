"""The package layout: imports flow one way (cli -> training -> evaluation -> codec -> zoo -> models ->
layers / entropy -> base utilities), no import cycle, every module imports on its own, and the CLI's
help does not depend on what was imported first."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tcmcodec

PACKAGE = Path(tcmcodec.__file__).parent

#: Rank of each top-level part of the package: a module may import only from parts of lower or equal rank.
RANKS = {
    "errors": 0, "ops": 0, "_compat": 0, "_fileio": 0, "_varint": 0,
    "layers": 1, "entropy": 1,
    "models": 2,
    "zoo": 3,
    "codec": 4,
    "evaluation": 5,
    "training": 6,
    "cli": 7,
}


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package but the lazy top-level facade."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if name != "tcmcodec":
            out[name] = path
    return out


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """The tcmcodec modules an import statement names (for ``from X import y``: X.y when it is a module)."""
    known = _modules()
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("tcmcodec.")]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not target.startswith("tcmcodec"):
        return []
    names = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
    return names or ([target] if target != "tcmcodec" else [])


def _imports(toplevel_only: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        nodes = tree.body if toplevel_only else list(ast.walk(tree))
        deps: set[str] = set()
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(_resolve(name, node, path.name == "__init__.py"))
        graph[name] = deps - {name}
    return graph


def _part(module: str) -> str:
    return module.split(".")[1]


def test_imports_flow_one_way_through_the_layers():
    wrong = [
        f"{m} imports {d}"
        for m, deps in _imports(toplevel_only=False).items()
        for d in deps
        if d != "tcmcodec" and RANKS[_part(d)] > RANKS[_part(m)]
    ]
    assert not wrong, "\n".join(wrong)


def test_every_part_of_the_package_has_a_rank():
    assert {_part(m) for m in _modules()} == set(RANKS)


def test_module_level_imports_have_no_cycle():
    graph = _imports(toplevel_only=True)
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack, m, d]))
            if d in graph and not state.get(d):
                visit(d, [*stack, m])
        state[m] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m, [])


def test_every_module_imports_alone_in_a_fresh_interpreter():
    code = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {sorted(n for n in _modules() if not n.endswith('__main__'))!r}:\n"
        "    for m in [m for m in sys.modules if m == 'tcmcodec' or m.startswith('tcmcodec.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        failed.append(f'{name}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(failed))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def _help_after(first: str) -> str:
    code = f"import {first}\nfrom tcmcodec.cli import build_parser\nprint(build_parser().format_help())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cli_help_is_the_same_whatever_is_imported_first():
    reference = _help_after("tcmcodec")
    assert "compress" in reference and "train" in reference
    for first in ("tcmcodec.cli.evaluation", "tcmcodec.cli.demo", "tcmcodec.cli.training", "tcmcodec.cli.coding"):
        assert _help_after(first) == reference, first


def test_every_subcommand_is_dispatched_by_the_registry():
    from tcmcodec.cli import COMMANDS, main

    src = Path(main.__code__.co_filename).read_text()
    for name in COMMANDS:
        assert f'"{name}"' not in src, f"main.py special-cases {name!r}"
