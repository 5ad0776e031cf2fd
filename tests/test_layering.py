"""The packages import only downwards (DESIGN.md, "Layering"): benchmarks -> export -> train -> runtime.

Read from the source, every import statement included (those inside functions too: a lazy import is still a
dependency, and the one that broke the rule, ``dannet-export int8`` scoring with ``benchmarks.miou``, was one).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: what each package may import of the others, written out from DESIGN.md's diagram (not read from the code)
ALLOWED = {"runtime": set(), "train": {"runtime"}, "export": {"train", "runtime"},
           "benchmarks": {"export", "train", "runtime"}}


def imported_packages(path: Path) -> dict[str, int]:
    """The project packages ``path`` imports (absolute imports), each with the line of its first import."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in ALLOWED:
                found.setdefault(top, node.lineno)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    sources = sorted((REPO / package).rglob("*.py"))
    assert sources, package
    upwards = [f"{path.relative_to(REPO)}:{line} imports {imported}"
               for path in sources for imported, line in imported_packages(path).items()
               if imported != package and imported not in ALLOWED[package]]
    assert not upwards, "; ".join(upwards)


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "lazy.py"
    source.write_text("import numpy\n\n\ndef gate():\n    from benchmarks.miou import evaluate\n"
                      "    import train.data as data\n    from .local import x\n")
    assert imported_packages(source) == {"benchmarks": 5, "train": 6}
