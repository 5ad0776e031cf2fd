"""``make gpu-check`` (scripts/gpu_check.py) on a machine without a GPU: a clear refusal and a report, and
its reading of ctest's output (a skipped kernel test is a failure there)."""
from __future__ import annotations

import importlib.util
import json
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


# --- the multi-camera step ------------------------------------------------------------------------------------

def test_the_multicam_step_runs_on_the_gpu_backend_or_says_why_not() -> None:
    pick = gpu_check().multicam_backend
    everything = {"torch_cuda": True, "onnxruntime_cuda": True, "gstreamer": True}
    assert pick(everything) == ("torch", "")
    assert pick(everything | {"torch_cuda": False}) == ("onnxruntime", "")
    backend, reason = pick(everything | {"torch_cuda": False, "onnxruntime_cuda": False})
    assert backend is None and "CUDA" in reason
    backend, reason = pick(everything | {"gstreamer": False}, wanted="torch")
    assert backend is None and "GStreamer" in reason


def test_without_a_gpu_the_multicam_step_is_skipped_with_a_reason(tmp_path: Path) -> None:
    """What this machine's Python has, probed for real: no CUDA here, so a skip (reported, not a failure)."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    module = gpu_check()
    step = module.multicam_bench(sys.executable, tmp_path)
    assert step.status == "skipped" and ("CUDA" in step.reason or "GStreamer" in step.reason), step
    report = module.write_report(tmp_path, {}, [step]).read_text()
    assert f"| {step.name} | skipped | 0 | {step.reason} |" in report


def test_the_multicam_step_reports_each_ratio_of_the_benchmark_it_ran(tmp_path: Path) -> None:
    """The step run for real, on the CPU's torch backend with two small cameras: its figures are the benchmark's
    totals, and each ratio is batched over one-at-a-time total frames/s, in report.json and report.md."""
    torch = pytest.importorskip("torch")
    module = gpu_check()
    settings = {"cameras": "1,2", "size": "32x64", "rate": "30", "seconds": "1"}
    step = module.multicam_bench(sys.executable, tmp_path, backend="torch", settings=settings)
    if step.status == "skipped":
        pytest.skip(step.reason)  # no GStreamer here
    assert step.status == "passed", step.output_tail
    rows = json.loads((tmp_path / "multicam.json").read_text())["results"]
    for cameras in (1, 2):
        batched, in_turns = (next(r["fps_out"] for r in rows if r["cameras"] == cameras and r["batched"] == mode)
                             for mode in (True, False))
        figures = step.figures["1 camera" if cameras == 1 else f"{cameras} cameras"]
        assert (figures["batched_fps"], figures["one_at_a_time_fps"]) == (batched, in_turns)
        assert figures["ratio"] == pytest.approx(batched / in_turns, abs=1e-3)
    assert step.figures["device"].startswith("cuda" if torch.cuda.is_available() else "cpu")
    assert step.figures["goal"].startswith("2 cameras batched")
    module.write_report(tmp_path, {}, [step])
    assert json.loads((tmp_path / "report.json").read_text())["steps"][0]["figures"] == step.figures
    assert f"| {step.name} | passed |" in (tmp_path / "report.md").read_text()
