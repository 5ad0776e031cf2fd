"""``make gpu-check`` (scripts/gpu_check.py) on a machine without a GPU: a clear refusal and a report, and
its reading of ctest's output (a skipped kernel test is a failure there)."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_refuses_in_one_line_and_writes_a_report(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi on the PATH: no GPU, whatever the machine
    assert gpu_check().main(["--out", str(tmp_path / "report")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no NVIDIA GPU" in err[0]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| GPU | failed |" in report and (tmp_path / "report" / "report.json").is_file()


@pytest.mark.skipif(shutil.which("ctest") is None or not (BUILD / "CTestTestfile.cmake").is_file(),
                    reason="needs the CMake build (make test-cmake)")
def test_a_skipped_kernel_test_is_recognised_in_real_ctest_output() -> None:
    def ctest(name: str) -> str:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no device visible: the kernel test skips (exit 77)
        return subprocess.run(["ctest", "--test-dir", str(BUILD), "-R", f"^{name}$"], capture_output=True, text=True,
                              env=env).stdout

    module = gpu_check()
    skipped = ctest("reweightArgmax.kernel")
    if "Skipped" not in skipped:
        pytest.skip("the GPU kernel test is not built here (no nvcc)")
    assert module.kernel_test_skipped(skipped)
    assert not module.kernel_test_skipped(ctest("reweightArgmax.hostReference"))
