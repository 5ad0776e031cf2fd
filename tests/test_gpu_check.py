"""``make gpu-check`` (scripts/gpu_check.py) on a machine without a GPU: a clear refusal and a report, its
reading of ctest's output (only a kernel test that passed passes), the report of a run cut short, and the
multi-camera step for real on the CPU, with and without GStreamer."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
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
def test_only_a_kernel_test_that_passed_passes_in_real_ctest_output() -> None:
    """Skipped (no device), absent (not built: no CUDA compiler) and failed are all failures of the GPU step; the
    passed case is another test's real report line, renamed (no kernel test can pass here)."""
    def ctest(name: str) -> str:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no device visible: the kernel test skips (exit 77)
        return subprocess.run(["ctest", "--test-dir", str(BUILD), "-R", f"^{name}$"], capture_output=True, text=True,
                              env=env).stdout

    module = gpu_check()
    skipped = ctest("reweightArgmax.kernel")
    if "Skipped" not in skipped:
        pytest.skip("the GPU kernel test is not built here (no nvcc)")
    other = ctest("reweightArgmax.hostReference")
    assert "Passed" in other
    assert not module.kernel_test_passed(skipped) and not module.kernel_test_passed(other)
    assert module.kernel_test_passed(other.replace("reweightArgmax.hostReference", "reweightArgmax.kernel"))
    assert not module.kernel_test_passed(other.replace("reweightArgmax.hostReference", "reweightArgmax.kernel")
                                         .replace("Passed", "***Failed"))


# --- the multi-camera step ------------------------------------------------------------------------------------

def test_the_multicam_step_runs_on_the_gpu_backend_or_says_why_not() -> None:
    pick = gpu_check().multicam_backend
    everything = {"torch": True, "torch_cuda": True, "onnxruntime_cuda": True, "onnx_export": True, "gstreamer": True}
    assert pick(everything) == ("torch", "")
    assert pick(everything | {"torch_cuda": False}) == ("onnxruntime", "")
    backend, reason = pick(everything | {"torch_cuda": False, "onnxruntime_cuda": False})
    assert backend is None and "CUDA" in reason
    backend, reason = pick(everything | {"torch_cuda": False, "onnx_export": False})  # the model could not be made
    assert backend is None and "onnxscript" in reason
    backend, reason = pick(everything | {"torch": False})
    assert backend is None and "PyTorch" in reason
    assert pick(everything | {"gstreamer": False}) == ("torch", "")  # GStreamer only decides the cameras
    assert gpu_check().multicam_source(everything) == "test"
    assert gpu_check().multicam_source(everything | {"gstreamer": False}) == "images"


def test_without_a_gpu_the_multicam_step_is_skipped_with_a_reason(tmp_path: Path) -> None:
    """What this machine's Python has, probed for real: no CUDA here, so a skip (reported, not a failure)."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    module = gpu_check()
    check = module.Check(sys.executable, tmp_path, {})
    module.multicam_bench(check)
    step = check.steps[-1]
    assert step.status == "skipped" and "CUDA" in step.reason, step
    assert f"| {step.name} | skipped | 0 | {step.reason} |" in (tmp_path / "report.md").read_text()


def test_a_command_with_a_script_in_it_keeps_the_report_readable(tmp_path: Path) -> None:
    """The probe is ``python -c`` with a script of many lines: inline backticks cannot hold it, a block can."""
    module = gpu_check()
    check = module.Check(sys.executable, tmp_path, {})
    check.run(module.Step("probe"), [sys.executable, "-c", "import sys\nprint('found')"], 60)
    report = (tmp_path / "report.md").read_text()
    assert f"```\n{sys.executable} -c import sys\nprint('found')\n```\n\n```\nfound\n```" in report


def test_without_gstreamer_the_multicam_step_reads_shorter_image_folders(tmp_path: Path, monkeypatch) -> None:
    """Folders are read as fast as the GPU infers, so the step's length follows the GPU's speed: their runs are 1 s
    of frames per camera at the rate, where live cameras run 3 s."""
    module = gpu_check()
    commands = []

    def fake_run(self, step, command, timeout, env=None):
        commands.append(command)
        self.steps.append(step)
        return subprocess.CompletedProcess(command, 0, json.dumps(
            {"torch": True, "torch_cuda": True, "onnxruntime_cuda": False, "onnx_export": True, "gstreamer": False}))

    monkeypatch.setattr(module.Check, "run", fake_run)
    module.multicam_bench(module.Check(sys.executable, tmp_path, {}))
    probe, bench = commands
    assert bench[bench.index("--source") + 1] == "images" and "--seconds=1" in bench and "--rate=240" in bench


def test_the_multicam_step_reports_each_ratio_of_the_benchmark_it_ran(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The step run for real, on the torch backend (the one a GPU takes: a dynamic-batch .pt2 program, on the CPU
    here) with two small cameras, as on a GPU image without GStreamer: PyGObject cannot be imported, so the probe
    finds none and the cameras are image folders. Its figures are the benchmark's totals, and each ratio is
    batched over one-at-a-time total frames/s, in report.json and report.md."""
    torch = pytest.importorskip("torch")
    (tmp_path / "no-gi" / "gi").mkdir(parents=True)
    (tmp_path / "no-gi" / "gi" / "__init__.py").write_text("raise ImportError('no PyGObject on this machine')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "no-gi"), os.environ.get("PYTHONPATH", "")]))
    module = gpu_check()
    settings = {"cameras": "1,2", "size": "32x64", "rate": "10", "seconds": "1"}  # 10 frames a camera
    check = module.Check(sys.executable, tmp_path, {})
    module.multicam_bench(check, backend="torch", settings=settings)
    step = check.steps[-1]
    assert step.status == "passed" and step.name.endswith("(torch, images cameras)"), (step.name, step.output_tail)
    assert '"gstreamer": false' in check.steps[-2].output_tail  # the probe's answer
    rows = json.loads((tmp_path / "multicam.json").read_text())["results"]
    assert all(camera["written"] == 10 for row in rows for camera in row["per_camera"])  # every frame of a folder
    rows = json.loads((tmp_path / "multicam.json").read_text())["results"]
    for cameras in (1, 2):
        batched, in_turns = (next(r["fps_out"] for r in rows if r["cameras"] == cameras and r["batched"] == mode)
                             for mode in (True, False))
        figures = step.figures["1 camera" if cameras == 1 else f"{cameras} cameras"]
        assert (figures["batched_fps"], figures["one_at_a_time_fps"]) == (batched, in_turns)
        assert figures["ratio"] == pytest.approx(batched / in_turns, abs=1e-3)
    assert step.figures["device"].startswith("cuda" if torch.cuda.is_available() else "cpu")
    assert step.figures["goal"].startswith("2 cameras batched")
    check.write()
    assert json.loads((tmp_path / "report.json").read_text())["steps"][-1]["figures"] == step.figures
    assert f"| {step.name} | passed |" in (tmp_path / "report.md").read_text()


# --- a run cut short, a step that hangs or whose figures cannot be read ------------------------------------------

def report_steps(folder: Path) -> list[dict]:
    return json.loads((folder / "report.json").read_text())["steps"]


def ended(pid_file: Path) -> bool:
    """Whether the process whose id is in ``pid_file`` has ended (gone, or a zombie its new parent has not reaped)."""
    try:
        return Path(f"/proc/{pid_file.read_text()}/stat").read_text().split(") ")[1][0] == "Z"
    except FileNotFoundError:
        return True


def test_a_check_stopped_by_sigterm_reports_what_ran_what_was_cut_and_what_never_started(tmp_path: Path) -> None:
    """``timeout 420 python3 scripts/gpu_check.py``: SIGTERM mid-step kills that step's command, and the report
    says the step before passed, the one running was stopped, the stages after never started. While a step
    runs, the report already names it as running."""
    module = gpu_check()
    check = module.Check(sys.executable, tmp_path, {})
    pid_file = tmp_path / "pid"
    seen_while_running = "import json, sys; print([s['status'] for s in json.load(open(sys.argv[1]))['steps']])"
    waits = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    stages = {"quick": lambda: check.run(module.Step("quick"), [sys.executable, "-c", seen_while_running,
                                                                str(tmp_path / "report.json")], 60),
              "slow": lambda: check.run(module.Step("slow"), [sys.executable, "-c", waits], 60),
              "later": lambda: check.run(module.Step("later"), [sys.executable, "-c", "pass"], 60)}
    previous = signal.signal(signal.SIGTERM, module.stop)
    timer = threading.Timer(3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(module.Stopped):
            module.run_stages(check, stages)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    quick, slow, later = report_steps(tmp_path)
    assert (quick["status"], quick["output_tail"]) == ("passed", "['running']")
    assert slow["status"] == "failed" and slow["reason"].startswith("stopped by SIGTERM after")
    assert (later["name"], later["status"]) == ("later", "not run") and "SIGTERM" in later["reason"]
    assert ended(pid_file)  # the stopped step's command did not outlive the check
    assert "| slow | failed |" in (tmp_path / "report.md").read_text()


def test_a_step_that_times_out_is_killed_with_its_children_and_its_output_is_kept(tmp_path: Path) -> None:
    module = gpu_check()
    check = module.Check(sys.executable, tmp_path, {})
    pid_file = tmp_path / "pid"
    parent = ("import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"open({str(pid_file)!r}, 'w').write(str(child.pid)); print('child started', flush=True); child.wait()")
    step = module.Step("hangs")
    assert check.run(step, [sys.executable, "-c", parent], 2) is None
    assert (step.status, step.reason) == ("failed", "timed out after 2 s")
    assert step.output_tail == "child started" and (tmp_path / step.log).read_text() == "child started\n"
    assert ended(pid_file)  # a worker the command started (DataLoader, compiler) is gone too


def test_figures_that_cannot_be_read_fail_their_step_and_the_next_stages_still_run(tmp_path: Path) -> None:
    module = gpu_check()
    check = module.Check(sys.executable, tmp_path, {})

    def unreadable() -> None:
        check.run(module.Step("bench"), [sys.executable, "-c", "pass"], 60)
        raise KeyError("rows")

    module.run_stages(check, {"bench": unreadable,
                              "next": lambda: check.run(module.Step("next"), [sys.executable, "-c", "pass"], 60)})
    bench, after = report_steps(tmp_path)
    assert (bench["status"], bench["reason"]) == ("failed", "gpu_check.py: KeyError: 'rows'")
    assert after["status"] == "passed"


def test_what_never_ran_on_a_gpu_runs_first(tmp_path: Path, monkeypatch) -> None:
    """The steps in order, without TensorRT, as commands (none run here): the GPU tests, the kernel and
    multi-camera benchmarks before the native build and the training figures measured before."""
    module = gpu_check()
    commands = []

    def fake_run(self, step, command, timeout, env=None):
        commands.append(" ".join(command[1:4]) if command[0] == sys.executable else " ".join(command))
        step.status = "passed"
        self.steps.append(step)
        stdout = json.dumps({"torch": True, "torch_cuda": True, "onnxruntime_cuda": False, "onnx_export": True,
                             "gstreamer": True})
        return subprocess.CompletedProcess(command, 0, stdout)

    monkeypatch.setattr(module, "gpu_name", lambda: "NVIDIA H200, 580.159.04, 9.0")
    monkeypatch.setattr(module, "python_module_version", lambda python, name: None)
    monkeypatch.setattr(module.Check, "run", fake_run)
    monkeypatch.setattr(module, "kernel_test_passed", lambda output: True)
    monkeypatch.delenv("TensorRT_ROOT", raising=False)
    module.main(["--out", str(tmp_path), "--build-dir", str(tmp_path / "build")])
    assert [c.split("\n")[0] for c in commands[:4]] == ["-m pytest -m", "-m benchmarks.cli kernel", "-c ",
                                                        "-m benchmarks.cli multicam"], commands
    assert [c.split()[0] for c in commands[4:7]] == ["cmake", "cmake", "ctest"]
    assert commands[7].startswith("-m train.cli synth")
    # no TensorRT: only the kernel test is built and run (the CPU tests are CI's)
    assert commands[5].endswith("--target reweightArgmaxKernelTest")
    assert commands[6].endswith("-R ^reweightArgmax\\.kernel$")
    steps = {s["name"]: s["status"] for s in report_steps(tmp_path)}
    assert steps["pytest -m tensorrt"] == steps["TensorRT engines + latency"] == "skipped"
