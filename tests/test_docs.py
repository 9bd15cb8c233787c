"""The Python snippets of README.md and docs/*.md run as written (docs that are never run drift)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_snippets_run(page: Path) -> None:
    """Every ```python block of the page runs, in order, in one namespace."""
    blocks = BLOCK.findall(page.read_text())
    namespace: dict[str, object] = {"__name__": f"doc_{page.stem}"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{page.name} block {i} failed: {type(exc).__name__}: {exc}")


def test_readme_has_the_two_commands() -> None:
    """README.md names the setup-and-run command and the test command that CI runs."""
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()
