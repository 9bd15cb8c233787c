"""Tests of the package surface: light import, public names, version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tpv


def test_import_tpv_does_not_import_model_libraries() -> None:
    """`import tpv` loads no transformers, peft or datasets (checked in a fresh interpreter)."""
    code = (
        "import sys, tpv\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'peft', 'datasets'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_resolve() -> None:
    """Every name in tpv.__all__ resolves (lazy names included)."""
    for name in tpv.__all__:
        assert getattr(tpv, name) is not None, name


def test_errors_derive_from_one_base() -> None:
    """Every tpv error class derives from TPVError."""
    from tpv import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), tpv.TPVError)


def _module_imports(root: Path) -> dict[str, set[str]]:
    """Module-level imports between tpv's own modules (imports inside functions and TYPE_CHECKING blocks excluded)."""
    import ast

    files = {".".join(p.relative_to(root.parent).with_suffix("").parts): p for p in root.rglob("*.py")}
    names = {m.removesuffix(".__init__"): m for m in files}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names else node.module
                           for a in node.names]  # fmt: skip
            for target in targets:
                if target in names and names[target] != module:
                    graph[module].add(names[target])
    return graph


def test_no_import_cycle_in_the_package() -> None:
    """Module-level imports between tpv's modules form no cycle (layers import downward only)."""
    graph = _module_imports(Path(tpv.__file__).parent)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(n) :], n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
