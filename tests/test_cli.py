"""Every console script answers --help and exits 0; a bad invocation exits non-zero."""
from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = {"dannet-train": "train.cli", "dannet-export": "export.cli", "dannet-run": "runtime.cli",
           "dannet-bench": "benchmarks.cli"}


@pytest.mark.parametrize("prog, module", MODULES.items())
def test_help(prog: str, module: str) -> None:
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and f"usage: {prog}" in out.stdout


@pytest.mark.parametrize("module", MODULES.values())
def test_bad_invocation_fails(module: str) -> None:
    assert subprocess.run([sys.executable, "-m", module, "--no-such-flag"], capture_output=True).returncode != 0
