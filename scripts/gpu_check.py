"""``make gpu-check``: everything in DANNet Edge that only a GPU can run, in one command, one report.

The CPU test suite executes the GPU path everywhere it can (the kernel under a CPU emulation of CUDA,
the plugin through TensorRT's lifecycle in a test host, the TensorRT backend against a stand-in), but
nothing GPU-side counts as working until it has run on a GPU. GPU time is scarce, so what has run on a
GPU least comes first. This script runs, in order:

1. ``pytest -m gpu``: NVRTC kernel (labels and confidence) vs the NumPy twin, the PyTorch backend on
   CUDA, CUDA training steps vs the CPU's, autocast;
2. ``dannet-bench kernel``: the ReweightArgmax kernel vs PyTorch interpolate + mul + argmax, and labels
   only vs labels + confidence;
3. ``dannet-bench multicam``: 1, 2 and 4 live ``test://`` cameras (image folders where GStreamer is not
   installed, as on a bare GPU image) through one dynamic-batch model on the GPU (PyTorch on CUDA, or ONNX
   Runtime's CUDA provider), batched vs one at a time; issue #15's goal is batched >= 2x one at a time with
   4 cameras (reported, not a pass/fail condition);
4. the CMake build of the CUDA kernel test for this GPU's architecture, and ctest, where the kernel test must
   RUN and pass on the device; where TensorRT is found, every target (the plugin) and every test;
5. where TensorRT is installed: ``pytest -m tensorrt`` (plugin in an engine, engine build, TensorRT
   backend); a PSPNet-ResNet18 + relighting graph exported with both tails at 540x960 -> 1080x1920
   (fp16), an engine built from each, and ``dannet-bench latency`` on each;
6. DANNet adaptation as the released code trains it (PSPNet-ResNet101, 512 source crops, 960 target
   crops, batch 2) on generated 1080x1920 data: seconds per step in fp32 and bf16 autocast, and
   ``dannet-train precision`` (autocast drift against fp32) at that size.

Needs an NVIDIA GPU, CUDA (nvcc), this repository's Python dependencies (``make setup``, or any
environment with them: ``make gpu-check PY=python3``) and, for step 5, TensorRT's Python package and
headers (``TensorRT_ROOT``). Every step runs even when an earlier one failed; a step that needs what
is not installed is skipped with the reason. The report (report.md, report.json) is rewritten when each
step starts and ends, so a run cut short (SIGTERM from an outer ``timeout``, Ctrl-C, or a machine that
goes away) still says what passed, what was running and what never started; each command's whole output
is in its logs/. Each step's time limit is about twice its time on an H200, so a step that hangs costs
little; on a slower machine (a Jetson) ``--timeout-factor`` stretches every limit. On an H200 without
TensorRT the whole check takes an estimated 6-7 minutes (7 on its second full run, 2026-11-30, which had no
multi-camera step and built and ran every CPU test): under a shorter outer limit, step 6 (figures measured
before) is the one cut short.

    python scripts/gpu_check.py [--out gpu-check-report] [--checkpoint CKPT] [--timeout-factor F]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the project's own packages
from runtime.atomic import atomic_write  # noqa: E402  (after the path: the report is replaced, never half-written)
from runtime import arguments  # noqa: E402

TAIL_LINES = 40


@dataclass
class Step:
    name: str
    status: str = "not run"  # running | passed | failed | skipped | not run
    reason: str = ""
    seconds: float = 0.0
    command: str = ""
    output_tail: str = ""
    log: str = ""  # the command's whole output, in the report folder
    figures: dict = field(default_factory=dict)


class Stopped(Exception):
    """SIGTERM arrived (an outer ``timeout``): the check ends with the report of what it did so far."""


def stop(signum: int, frame) -> None:
    raise Stopped(signal.Signals(signum).name)


class Check:
    """The check in progress: the Python it tests, its report folder, and every step so far. The report is
    written whenever a step is added or ends."""

    def __init__(self, python: str, out: Path, machine: dict, timeout_factor: float = 1.0) -> None:
        self.python, self.out, self.machine, self.timeout_factor = python, out, machine, timeout_factor
        self.steps: list[Step] = []

    def add(self, step: Step) -> Step:
        self.steps.append(step)
        self.write()
        return step

    def run(self, step: Step, command: list[str], timeout: float,
            env: dict | None = None) -> subprocess.CompletedProcess | None:
        """Run ``command`` as ``step`` (added to the report, marked running until it ends); the step fails on a
        non-zero exit or after ``timeout`` seconds (times ``timeout_factor``). The command runs in its own process
        group, killed whole when it times out or the check is stopped (DataLoader workers, compilers); its whole
        output goes to logs/ in the report folder."""
        timeout *= self.timeout_factor
        step.command, step.status = " ".join(command), "running"
        if not any(s is step for s in self.steps):
            self.steps.append(step)
        self.write()
        number = next(i for i, s in enumerate(self.steps) if s is step)
        started = time.perf_counter()
        try:
            process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True, errors="replace", env={**os.environ, **(env or {})},
                                       start_new_session=True)
        except FileNotFoundError as e:
            step.status, step.reason = "failed", f"{command[0]} not found ({e})"
            self.write()
            return None
        output, done = "", None
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            output = kill(process)
            step.status, step.reason = "failed", f"timed out after {timeout:.0f} s"
        except (Stopped, KeyboardInterrupt) as e:
            output = kill(process)
            step.status = "failed"
            step.reason = f"stopped by {str(e) or 'Ctrl-C'} after {time.perf_counter() - started:.0f} s"
            raise
        else:
            step.status = "passed" if process.returncode == 0 else "failed"
            step.reason = "" if process.returncode == 0 else f"exit code {process.returncode}"
            done = subprocess.CompletedProcess(command, process.returncode, output)
        finally:
            step.seconds = time.perf_counter() - started
            step.output_tail, step.log = tail(output), self.save_log(number, step, output)
            self.write()
        return done

    def save_log(self, number: int, step: Step, output: str) -> str:
        """A command's whole output in logs/, named by its step's place in the check; its path in the folder."""
        name = f"logs/{number:02d}-{re.sub(r'[^A-Za-z0-9.]+', '-', step.name).strip('-')}.log"
        (self.out / "logs").mkdir(exist_ok=True)
        atomic_write(self.out / name, output)
        return name

    def write(self) -> Path:
        """report.json and report.md as they stand now."""
        atomic_write(self.out / "report.json", json.dumps({"machine": self.machine,
                                                           "steps": [asdict(s) for s in self.steps]}, indent=1))
        lines = ["# DANNet Edge GPU check", "", *(f"- {k}: {v}" for k, v in self.machine.items()), "",
                 "| step | status | seconds | figures / reason |", "| --- | --- | --- | --- |"]
        for s in self.steps:
            detail = s.reason or ", ".join(f"{k}: {v}" for k, v in s.figures.items())
            lines.append(f"| {s.name} | {s.status} | {s.seconds:.0f} | {detail} |")
        for s in self.steps:
            if s.output_tail:  # a command with a script in it (python -c) in a block of its own: inline it breaks
                command = ["```", s.command, "```"] if "\n" in s.command else [f"`{s.command}`"]
                lines += ["", f"## {s.name}", "", *command, "", "```", s.output_tail, "```"]
        return atomic_write(self.out / "report.md", "\n".join(lines) + "\n")


def kill(process: subprocess.Popen) -> str:
    """Kill ``process`` and its process group; what it wrote until then."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended on its own meanwhile
        pass
    return process.communicate()[0]


def tail(output: str) -> str:
    return "\n".join(output.splitlines()[-TAIL_LINES:])


def gpu_name() -> str | None:
    """The first GPU's name from nvidia-smi, or None when there is no usable NVIDIA GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
                         capture_output=True, text=True)
    line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    return line or None


def python_module_version(python: str, module: str) -> str | None:
    out = subprocess.run([python, "-c", f"import {module}; print({module}.__version__)"], capture_output=True,
                         text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def build_and_ctest(check: Check, build_dir: Path, everything: bool) -> None:
    """The kernel test built for this GPU and run on it; with ``everything`` (TensorRT is here), every target and
    test, the plugin's among them. Without TensorRT the other tests are CPU tests that CI runs: building them
    here would spend GPU time, and a new compiler's warning in one of them (-Werror) would stop the kernel test."""
    configure, build = Step("cmake configure"), Step("cmake build" if everything else "cmake build (kernel test)")
    ctest = Step("ctest" if everything else "ctest (kernel on the GPU)")
    args = ["cmake", "-S", ".", "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_CUDA_ARCHITECTURES=native"]
    if os.environ.get("TensorRT_ROOT"):
        args.append(f"-DTensorRT_ROOT={os.environ['TensorRT_ROOT']}")
    if check.run(configure, args, 120) is None or configure.status != "passed":
        return
    jobs = ["-j", str(os.cpu_count() or 2)]
    check.run(build, ["cmake", "--build", str(build_dir), *jobs, *([] if everything else ["--target", KERNEL_TARGET])],
              300)
    if build.status != "passed":
        return
    done = check.run(ctest, ["ctest", "--test-dir", str(build_dir), "--output-on-failure", *jobs,
                             *([] if everything else ["-R", f"^{re.escape(KERNEL_TEST)}$"])], 120)
    if done is not None and not kernel_test_passed(done.stdout):
        ctest.status, ctest.reason = "failed", "the kernel test did not run and pass on the GPU (skipped, not built?)"


KERNEL_TARGET, KERNEL_TEST = "reweightArgmaxKernelTest", "reweightArgmax.kernel"  # plugins/CMakeLists.txt


def kernel_test_passed(ctest_output: str) -> bool:
    """Whether ctest reports the GPU kernel test as passed: skipped, not run, failed or absent (no CUDA compiler
    found, so never built) is a failure here."""
    return re.search(rf"{re.escape(KERNEL_TEST)} \.+\s+Passed", ctest_output) is not None


def pytest_marked(check: Check, marker: str, timeout: float, env: dict | None = None) -> None:
    """``pytest -m marker``: the tests only a GPU (and TensorRT) can run; at least one must pass."""
    step = Step(f"pytest -m {marker}")
    done = check.run(step, [check.python, "-m", "pytest", "-m", marker, "-rfEs", "-q", "-p", "no:cacheprovider"],
                     timeout, env)
    if done is not None:
        summary = re.findall(r"(\d+) (passed|failed|skipped|deselected|error)", done.stdout)
        step.figures = {kind: int(count) for count, kind in summary}
        if step.figures.get("passed", 0) == 0:
            step.status, step.reason = "failed", f"no test marked {marker} passed"


def engines_and_latency(check: Check, plugin_lib: Path, checkpoint: str | None) -> None:
    python, work = check.python, check.out / "models"
    work.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        make = Step("random PSPNet-ResNet18 + relighting checkpoint")
        checkpoint = str(work / "pspnet_r18.pth")
        check.run(make, [python, "-c", (
            "import sys, torch; from train.checkpoint import save_checkpoint; "
            "from train.models import RelightNet, build_segmenter; torch.manual_seed(0); "
            "save_checkpoint(sys.argv[1], {'segmenter': build_segmenter('pspnet', backbone='resnet18').eval(), "
            "'light': RelightNet().eval()}, arch='pspnet', config={'model': {'backbone': 'resnet18'}})"),
            checkpoint], 120)
        if make.status != "passed":
            return
    for tail_kind in ("portable", "plugin"):
        onnx, engine = work / f"dannet_{tail_kind}_fp16.onnx", work / f"dannet_{tail_kind}_fp16.engine"
        export = Step(f"export {tail_kind} tail (fp16, 540x960 -> 1080x1920)")
        check.run(export, [python, "-m", "export.cli", "onnx", "--checkpoint", checkpoint, "--tail", tail_kind,
                           "--precision", "fp16", "--input-size", "540x960", "--output-size", "1080x1920", "--out",
                           str(onnx)], 300)
        build = check.add(Step(f"engine build, {tail_kind} tail"))
        if export.status == "passed":
            check.run(build, [python, "-m", "export.cli", "engine", "--onnx", str(onnx), "--out", str(engine),
                              "--plugin-lib", str(plugin_lib), "--rebuild", "always"], 900)
        latency = check.add(Step(f"dannet-bench latency, {tail_kind} tail engine"))
        if build.status == "passed":
            result = out_file(check, f"latency_{tail_kind}.json")
            check.run(latency, [python, "-m", "benchmarks.cli", "latency", "--model", str(engine), "--input-size",
                                "1080x1920", "--iters", "200", "--warmup", "20", "--json", str(result)], 300,
                      env={"DANNET_PLUGIN_LIB": str(plugin_lib)})
            if latency.status == "passed":
                data = json.loads(result.read_text())
                latency.figures = {"inference_p50_ms": data["stages_ms"]["inference"]["p50"],
                                   "end_to_end_p50_ms": data["end_to_end_ms"]["p50"],
                                   "throughput_fps": data["throughput_fps"]}


def out_file(check: Check, name: str) -> Path:
    """A result file in the report folder, removed first: figures of an earlier check must not pass for this one's."""
    path = check.out / name
    path.unlink(missing_ok=True)
    return path


def kernel_bench(check: Check) -> None:
    step, result = Step("dannet-bench kernel"), out_file(check, "kernel_bench.json")
    check.run(step, [check.python, "-m", "benchmarks.cli", "kernel", "--json", str(result)], 90)
    if step.status == "passed":
        step.figures = {row["case"]: {k: row[k] for k in ("pytorch_ms", "kernel_ms", "speedup", "agree",
                                                          "kernel_confidence_ms", "confidence_cost",
                                                          "confidence_same_labels", "confidence_within_one")}
                        for row in json.loads(result.read_text())["rows"]}


#: ``dannet-bench multicam`` on the GPU: frames large enough for the GPU's work to matter, live cameras faster
#: than one-at-a-time inference can follow (4 x 240 frames/s), 3 s per configuration: about a minute with the
#: model's export
MULTICAM = {"cameras": "1,2,4", "size": "256x512", "rate": "240", "seconds": "3"}
#: image folders are read as fast as they are inferred, so their runs take as long as the GPU makes them: 240
#: frames per camera (at 3 s, 10,080 frames over the six runs would leave the step's limit no margin at 100/s)
MULTICAM_FOLDERS = MULTICAM | {"seconds": "1"}
#: what the multi-camera step needs, as the Python that runs it sees it (JSON on stdout); the backends are
#: imported before GStreamer starts (runtime/gst.py: load order)
MULTICAM_PROBE = """
import importlib.util, json
found = {"onnx_export": all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))}
try:
    import torch
    found["torch"], found["torch_cuda"] = True, torch.cuda.is_available()
except ImportError:
    found["torch"] = found["torch_cuda"] = False
try:
    import onnxruntime
    found["onnxruntime_cuda"] = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
except ImportError:
    found["onnxruntime_cuda"] = False
try:
    from runtime.gst import has_element
    found["gstreamer"] = has_element("videotestsrc") and has_element("appsink")
except Exception:
    found["gstreamer"] = False
print(json.dumps(found))
"""


def multicam_source(found: dict[str, bool]) -> str:
    """The cameras of the multi-camera step: live ``test://`` ones through GStreamer, or where it is not installed
    (GPU images seldom have it) a folder of frames per camera, read as fast as they are inferred."""
    return "test" if found["gstreamer"] else "images"


def multicam_backend(found: dict[str, bool], wanted: str | None = None) -> tuple[str | None, str]:
    """The backend the multi-camera step runs: ``wanted``, or on the GPU PyTorch where it sees CUDA, else ONNX
    Runtime with its CUDA provider; None and why not when it cannot run. ``found``: ``MULTICAM_PROBE``'s answer.
    Either way PyTorch makes the model (a .pt2 program, or an ONNX graph through onnxscript)."""
    if not found["torch"]:
        return None, "PyTorch is not installed: it makes the benchmark's model"
    if wanted is not None:
        return wanted, ""
    if found["torch_cuda"]:
        return "torch", ""
    if not found["onnxruntime_cuda"]:
        return None, "neither PyTorch with CUDA nor ONNX Runtime's CUDA provider (onnxruntime-gpu) is installed"
    if not found["onnx_export"]:
        return None, "ONNX Runtime has CUDA but onnx/onnxscript, which export the model for it, are not installed"
    return "onnxruntime", ""


def multicam_bench(check: Check, backend: str | None = None, settings: dict[str, str] | None = None) -> None:
    """Several cameras through one model, batched vs one at a time, on ``backend`` (default: the one
    ``multicam_backend`` picks) with ``settings`` (default: ``MULTICAM`` or ``MULTICAM_FOLDERS``, by the cameras
    ``multicam_source`` picks); skipped with the reason when something it needs is missing."""
    name = "dannet-bench multicam, batched vs one at a time"
    probe = check.run(Step("what the multi-camera step needs"), [check.python, "-c", MULTICAM_PROBE], 60)
    if probe is None or probe.returncode != 0:
        check.add(Step(name, "skipped", "could not tell what is installed (the step above)"))
        return
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    backend, why_not = multicam_backend(found, backend)
    if backend is None:
        check.add(Step(name, "skipped", why_not))
        return
    source = multicam_source(found)
    settings = settings or (MULTICAM if source == "test" else MULTICAM_FOLDERS)
    step, result = Step(f"{name} ({backend}, {source} cameras)"), out_file(check, "multicam.json")
    check.run(step, [check.python, "-m", "benchmarks.cli", "multicam", "--backend", backend, "--source", source,
                     *(f"--{key}={value}" for key, value in settings.items()), "--json", str(result)], 150)
    if step.status == "passed":
        step.figures = multicam_figures(json.loads(result.read_text()))


def multicam_figures(data: dict) -> dict:
    """Total frames/s batched and one at a time, and their ratio, per camera count; the goal at the most cameras."""
    total = {(row["cameras"], row["batched"]): row["fps_out"] for row in data["results"]}
    gains = data["batched_vs_one_at_a_time"]
    figures: dict = {"device": data["device"]}
    for cameras, gain in gains.items():
        name = "1 camera" if cameras == "1" else f"{cameras} cameras"
        figures[name] = {"batched_fps": total[int(cameras), True], "one_at_a_time_fps": total[int(cameras), False],
                         "ratio": gain}
    most = max(gains, key=int)
    figures["goal"] = (f"{most} cameras batched {gains[most]:.2f}x one at a time: "
                       f"{'met' if gains[most] >= 2 else 'not met'} (issue #15: >= 2x with 4 cameras)")
    return figures


TRAIN_STEPS = 30  # per precision; the first 10 (cuDNN's algorithm search, allocator growth) are not timed


def training_on_cuda(check: Check) -> None:
    python, data, runs = check.python, check.out / "train-data", check.out / "train-runs"
    for layout in ("cityscapes", "darkzurich"):
        synth = Step(f"generated {layout} data (1080x1920)")
        check.run(synth, [python, "-m", "train.cli", "synth", "--out", str(data), "--layout", layout, "--count", "4",
                          "--size", "1080x1920", "--quiet"], 120)
        if synth.status != "passed":
            return
    common = ["--config", "reference"]
    for key, value in {"data.source.root": data / "cityscapes", "data.target.root": data / "darkzurich",
                       "run.device": "cuda", "run.val_every": 0, "run.log_every": 1,
                       "run.checkpoint_every": 10 * TRAIN_STEPS, "data.workers": 4}.items():
        common += ["--set", f"{key}={value}"]
    for amp in ("none", "bf16"):
        train = Step(f"DANNet adaptation on CUDA, PSPNet-R101, amp {amp}")
        folder = runs / amp
        shutil.rmtree(folder, ignore_errors=True)
        check.run(train, [python, "-m", "train.cli", "adapt", *common, "--set", f"optim.iterations={TRAIN_STEPS}",
                          "--set", f"run.amp={amp}", "--out", str(folder)], 180)
        if train.status == "passed":
            train.figures = step_seconds(folder / "metrics.jsonl")
    drift, result = Step("dannet-train precision on CUDA, PSPNet-R101 (3 steps)"), out_file(check, "precision.json")
    check.run(drift, [python, "-m", "train.cli", "precision", *common, "--steps", "3", "--json", str(result)], 180)
    if drift.status == "passed":
        drift.figures = {f"{row['amp']} step {row['step']}": {k: f"{v:.2g}" for k, v in row.items()
                                                              if k.startswith(("loss_total", "grad_"))}
                         for row in json.loads(result.read_text())}


def step_seconds(metrics: Path) -> dict:
    """Median and spread of the seconds between logged iterations, after the first 10."""
    times = [json.loads(line)["time"] for line in metrics.read_text().splitlines() if '"loss_total"' in line]
    gaps = sorted(b - a for a, b in zip(times[10:], times[11:]))
    if not gaps:
        return {}
    return {"step_s_p50": round(gaps[len(gaps) // 2], 4), "step_s_min": round(gaps[0], 4),
            "step_s_max": round(gaps[-1], 4), "steps_timed": len(gaps)}


def run_stages(check: Check, stages: dict[str, Callable[[], None]]) -> None:
    """Each stage in turn, whatever the ones before did: an error in a stage's own code (reading a result it did
    not expect) fails that stage's last step, not the check. After SIGTERM or Ctrl-C the stages not started are
    listed as not run, and the exception goes on."""
    for number, (name, stage) in enumerate(stages.items()):
        before = len(check.steps)
        try:
            stage()
        except (Stopped, KeyboardInterrupt) as e:
            for later in list(stages)[number + 1:]:
                check.add(Step(later, "not run", f"the check was stopped ({str(e) or 'Ctrl-C'}) before it"))
            raise
        except Exception as e:
            failed = check.steps[-1] if len(check.steps) > before else check.add(Step(name))
            failed.status, failed.reason = "failed", f"gpu_check.py: {type(e).__name__}: {e}"
            check.write()
        last = check.steps[-1]
        print(f"[gpu-check] {last.name}: {last.status} {last.reason}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make gpu-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu-check-report", help="report folder (default gpu-check-report/)")
    parser.add_argument("--build-dir", default="build-gpu", help="CMake build folder for this GPU (default build-gpu/)")
    parser.add_argument("--checkpoint", help="time this dannet-train checkpoint (one that holds its relighting net) "
                                             "instead of a random PSPNet-ResNet18")
    parser.add_argument("--timeout-factor", type=arguments.number(0, low_open=True), default=1.0,
                        help="multiply every step's time limit, > 0 (default 1: a data-centre GPU; 4 for a Jetson)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    gpu = gpu_name()
    tensorrt = python_module_version(python, "tensorrt")
    machine = {"date": time.strftime("%Y-%m-%d %H:%M"), "gpu (name, driver, compute capability)": gpu or "none",
               "host": f"{platform.machine()}, {os.cpu_count()} CPUs", "python": platform.python_version(),
               "torch": python_module_version(python, "torch") or "not installed",
               "tensorrt": tensorrt or "not installed", "TensorRT_ROOT": os.environ.get("TensorRT_ROOT", "unset")}
    check = Check(python, out, machine, args.timeout_factor)
    if gpu is None:
        check.add(Step("GPU", "failed", "nvidia-smi finds no NVIDIA GPU"))
        print(f"make gpu-check: error: no NVIDIA GPU here (nvidia-smi finds none); report: {out / 'report.md'}",
              file=sys.stderr)
        return 1
    build_dir = (REPO / args.build_dir).resolve()
    plugin_lib = build_dir / "plugins" / "libdannet_trt_plugins.so"
    no_tensorrt = "TensorRT's Python package is not installed"
    stages = {
        "pytest -m gpu": lambda: pytest_marked(check, "gpu", 300),
        "dannet-bench kernel": lambda: kernel_bench(check),
        "dannet-bench multicam": lambda: multicam_bench(check),
        "cmake build + ctest": lambda: build_and_ctest(check, build_dir, everything=bool(tensorrt or
                                                                                os.environ.get("TensorRT_ROOT"))),
        "pytest -m tensorrt": lambda: (pytest_marked(check, "tensorrt", 600, {"DANNET_PLUGIN_LIB": str(plugin_lib)})
                                       if tensorrt else check.add(Step("pytest -m tensorrt", "skipped", no_tensorrt))),
        "TensorRT engines + latency": lambda: (engines_and_latency(check, plugin_lib, args.checkpoint) if tensorrt
                                               else check.add(Step("TensorRT engines + latency", "skipped",
                                                                   no_tensorrt))),
        "DANNet training on CUDA": lambda: training_on_cuda(check),
    }
    signal.signal(signal.SIGTERM, stop)
    try:
        run_stages(check, stages)
    except (Stopped, KeyboardInterrupt) as e:
        print(f"make gpu-check: error: stopped ({str(e) or 'Ctrl-C'}); report so far: {out / 'report.md'}",
              file=sys.stderr)
        return 1
    failed = [s.name for s in check.steps if s.status == "failed"]
    print(f"make gpu-check: {len(check.steps) - len(failed)} of {len(check.steps)} steps passed or skipped with a "
          f"reason; report: {check.write()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
