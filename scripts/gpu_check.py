"""``make gpu-check``: everything in DANNet Edge that only a GPU can run, in one command, one report.

The CPU test suite executes the GPU path everywhere it can (the kernel under a CPU emulation of CUDA,
the plugin through TensorRT's lifecycle in a test host, the TensorRT backend against a stand-in), but
nothing GPU-side counts as working until it has run on a GPU. This script runs, in order:

1. the CMake build for this GPU's architecture (with the TensorRT plugin where TensorRT is found) and
   ctest, where the kernel test must RUN on the device (a skip is a failure here);
2. ``pytest -m "gpu or tensorrt"``: NVRTC kernel vs the NumPy twin, torch CUDA paths, plugin in an
   engine, engine build, TensorRT backend;
3. where TensorRT is installed: a PSPNet-ResNet18 + relighting graph exported with both tails at
   540x960 -> 1080x1920 (fp16), an engine built from each, and ``dannet-bench latency`` on each;
4. ``dannet-bench kernel``: the ReweightArgmax kernel vs PyTorch interpolate + mul + argmax;
5. ``dannet-bench multicam``: 1, 2 and 4 live ``test://`` cameras through one dynamic-batch model on the
   GPU (PyTorch on CUDA, or ONNX Runtime's CUDA provider), batched vs one at a time; issue #15's goal is
   batched >= 2x one at a time with 4 cameras (reported, not a pass/fail condition);
6. DANNet adaptation as the released code trains it (PSPNet-ResNet101, 512 source crops, 960 target
   crops, batch 2) on generated 1080x1920 data: seconds per step in fp32 and bf16 autocast, and
   ``dannet-train precision`` (autocast drift against fp32) at that size.

Needs an NVIDIA GPU, CUDA (nvcc), this repository's Python dependencies (``make setup``, or any
environment with them: ``make gpu-check PY=python3``) and, for step 3 and the tensorrt tests,
TensorRT's Python package and headers (``TensorRT_ROOT``). Every step runs even when an earlier one
failed; the report says what ran, what passed, what was skipped and why, with the figures.

    python scripts/gpu_check.py [--out gpu-check-report] [--checkpoint CKPT]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the project's own packages
from runtime.atomic import atomic_write  # noqa: E402  (after the path: the report is replaced, never half-written)

TAIL_LINES = 40


@dataclass
class Step:
    name: str
    status: str = "not run"  # passed | failed | skipped | not run
    reason: str = ""
    seconds: float = 0.0
    command: str = ""
    output_tail: str = ""
    figures: dict = field(default_factory=dict)


def run(step: Step, command: list[str], timeout: int, env: dict | None = None) -> subprocess.CompletedProcess | None:
    """Run ``command`` for ``step``; the step fails on a non-zero exit or a timeout."""
    step.command = " ".join(command)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as e:
        step.status, step.reason = "failed", f"timed out after {timeout} s"
        step.output_tail = "\n".join(((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes)
                                      else (e.stdout or "")).splitlines()[-TAIL_LINES:])
        return None
    except FileNotFoundError as e:
        step.status, step.reason = "failed", f"{command[0]} not found ({e})"
        return None
    finally:
        step.seconds = time.perf_counter() - started
    step.output_tail = "\n".join((done.stdout + done.stderr).splitlines()[-TAIL_LINES:])
    step.status = "passed" if done.returncode == 0 else "failed"
    if done.returncode != 0:
        step.reason = f"exit code {done.returncode}"
    return done


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


def build_and_ctest(python: str, build_dir: Path) -> list[Step]:
    configure, build, ctest = Step("cmake configure"), Step("cmake build"), Step("ctest (kernel on the GPU)")
    args = ["cmake", "-S", ".", "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_CUDA_ARCHITECTURES=native"]
    if os.environ.get("TensorRT_ROOT"):
        args.append(f"-DTensorRT_ROOT={os.environ['TensorRT_ROOT']}")
    if run(configure, args, 600) is None or configure.status != "passed":
        return [configure, build, ctest]
    run(build, ["cmake", "--build", str(build_dir), "-j", str(os.cpu_count() or 2)], 1800)
    if build.status != "passed":
        return [configure, build, ctest]
    done = run(ctest, ["ctest", "--test-dir", str(build_dir), "--output-on-failure"], 1800)
    if done is not None and kernel_test_skipped(done.stdout):
        ctest.status, ctest.reason = "failed", "the kernel test was skipped: it found no usable GPU"
    return [configure, build, ctest]


def kernel_test_skipped(ctest_output: str) -> bool:
    """Whether ctest reports the GPU kernel test as skipped or not run (here that is a failure)."""
    return re.search(r"reweightArgmax\.kernel \.*\s*\*+(Skipped|Not Run)", ctest_output) is not None


def pytest_gpu(python: str, plugin_lib: Path) -> Step:
    step = Step("pytest -m 'gpu or tensorrt'")
    done = run(step, [python, "-m", "pytest", "-m", "gpu or tensorrt", "-rfEs", "-q", "-p", "no:cacheprovider"], 3600,
               env={"DANNET_PLUGIN_LIB": str(plugin_lib)} if plugin_lib.is_file() else None)
    if done is not None:
        summary = re.findall(r"(\d+) (passed|failed|skipped|deselected|error)", done.stdout)
        step.figures = {kind: int(count) for count, kind in summary}
        if step.figures.get("passed", 0) == 0:
            step.status, step.reason = "failed", "no GPU test passed"
    return step


def engines_and_latency(python: str, out: Path, plugin_lib: Path, checkpoint: str | None) -> list[Step]:
    steps = []
    if python_module_version(python, "tensorrt") is None:
        return [Step("TensorRT engines + latency", "skipped", "TensorRT's Python package is not installed")]
    work = out / "models"
    work.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        make = Step("random PSPNet-ResNet18 + relighting checkpoint")
        checkpoint = str(work / "pspnet_r18.pth")
        run(make, [python, "-c", (
            "import sys, torch; from train.checkpoint import save_checkpoint; "
            "from train.models import RelightNet, build_segmenter; torch.manual_seed(0); "
            "save_checkpoint(sys.argv[1], {'segmenter': build_segmenter('pspnet', backbone='resnet18').eval(), "
            "'light': RelightNet().eval()}, arch='pspnet', config={'model': {'backbone': 'resnet18'}})"),
            checkpoint], 600)
        steps.append(make)
        if make.status != "passed":
            return steps
    for tail in ("portable", "plugin"):
        onnx, engine = work / f"dannet_{tail}_fp16.onnx", work / f"dannet_{tail}_fp16.engine"
        export = Step(f"export {tail} tail (fp16, 540x960 -> 1080x1920)")
        run(export, [python, "-m", "export.cli", "onnx", "--checkpoint", checkpoint, "--tail", tail, "--precision",
                     "fp16", "--input-size", "540x960", "--output-size", "1080x1920", "--out", str(onnx)], 1200)
        build = Step(f"engine build, {tail} tail")
        if export.status == "passed":
            run(build, [python, "-m", "export.cli", "engine", "--onnx", str(onnx), "--out", str(engine),
                        "--plugin-lib", str(plugin_lib), "--rebuild", "always"], 3600)
        latency = Step(f"dannet-bench latency, {tail} tail engine")
        if build.status == "passed":
            result = out / f"latency_{tail}.json"
            run(latency, [python, "-m", "benchmarks.cli", "latency", "--model", str(engine), "--input-size",
                          "1080x1920", "--iters", "200", "--warmup", "20", "--json", str(result)], 1800,
                env={"DANNET_PLUGIN_LIB": str(plugin_lib)})
            if result.is_file():
                data = json.loads(result.read_text())
                latency.figures = {"inference_p50_ms": data["stages_ms"]["inference"]["p50"],
                                   "end_to_end_p50_ms": data["end_to_end_ms"]["p50"],
                                   "throughput_fps": data["throughput_fps"]}
        steps += [export, build, latency]
    return steps


def kernel_bench(python: str, out: Path) -> Step:
    step = Step("dannet-bench kernel")
    result = out / "kernel_bench.json"
    run(step, [python, "-m", "benchmarks.cli", "kernel", "--json", str(result)], 1800)
    if result.is_file():
        step.figures = {row["case"]: {k: row[k] for k in ("pytorch_ms", "kernel_ms", "speedup", "agree",
                                                          "kernel_confidence_ms", "confidence_cost",
                                                          "confidence_same_labels", "confidence_within_one")}
                        for row in json.loads(result.read_text())["rows"]}
    return step


#: ``dannet-bench multicam`` on the GPU: frames large enough for the GPU's work to matter, cameras faster than
#: one-at-a-time inference can follow (4 x 240 frames/s), 3 s per configuration: well under a minute with the
#: model's export
MULTICAM = {"cameras": "1,2,4", "size": "256x512", "rate": "240", "seconds": "3"}
#: what the multi-camera step needs, as the Python that runs it sees it (JSON on stdout)
MULTICAM_PROBE = """
import json
found = {}
try:
    import torch
    found["torch_cuda"] = torch.cuda.is_available()
except ImportError:
    found["torch_cuda"] = False
try:
    import onnxruntime
    found["onnxruntime_cuda"] = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
except ImportError:
    found["onnxruntime_cuda"] = False
try:
    from runtime.gst import gst
    gst()
    found["gstreamer"] = True
except Exception:
    found["gstreamer"] = False
print(json.dumps(found))
"""


def multicam_backend(found: dict[str, bool], wanted: str | None = None) -> tuple[str | None, str]:
    """The backend the multi-camera step runs: ``wanted``, or on the GPU PyTorch where it sees CUDA, else ONNX
    Runtime with its CUDA provider; None and why not when it cannot run. ``found``: ``MULTICAM_PROBE``'s answer."""
    if not found["gstreamer"]:
        return None, "GStreamer/PyGObject is not installed: the test:// cameras need it (scripts/setup.sh)"
    if wanted is not None:
        return wanted, ""
    if found["torch_cuda"]:
        return "torch", ""
    if found["onnxruntime_cuda"]:
        return "onnxruntime", ""
    return None, "neither PyTorch with CUDA nor ONNX Runtime's CUDA provider (onnxruntime-gpu) is installed"


def multicam_bench(python: str, out: Path, backend: str | None = None, settings: dict[str, str] = MULTICAM) -> Step:
    """Several cameras through one model, batched vs one at a time, on ``backend`` (default: the one
    ``multicam_backend`` picks); skipped with the reason when something it needs is missing."""
    step = Step("dannet-bench multicam, batched vs one at a time")
    probe = run(step, [python, "-c", MULTICAM_PROBE], 300)
    if probe is None or step.status != "passed":
        step.reason = f"could not tell what is installed: {step.reason}"
        return step
    backend, why_not = multicam_backend(json.loads(probe.stdout.strip().splitlines()[-1]), backend)
    if backend is None:
        return Step(step.name, "skipped", why_not)
    step, result = Step(f"{step.name} ({backend})"), out / "multicam.json"
    result.unlink(missing_ok=True)  # figures from an earlier check must not pass for this one's
    run(step, [python, "-m", "benchmarks.cli", "multicam", "--backend", backend,
               *(f"--{key}={value}" for key, value in settings.items()), "--json", str(result)], 300)
    if step.status == "passed":
        step.figures = multicam_figures(json.loads(result.read_text()))
    return step


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


def training_on_cuda(python: str, out: Path) -> list[Step]:
    data, runs = out / "train-data", out / "train-runs"
    steps = []
    for layout in ("cityscapes", "darkzurich"):
        synth = Step(f"generated {layout} data (1080x1920)")
        run(synth, [python, "-m", "train.cli", "synth", "--out", str(data), "--layout", layout, "--count", "4",
                    "--size", "1080x1920", "--quiet"], 900)
        steps.append(synth)
        if synth.status != "passed":
            return steps
    common = ["--config", "reference"]
    for key, value in {"data.source.root": data / "cityscapes", "data.target.root": data / "darkzurich",
                       "run.device": "cuda", "run.val_every": 0, "run.log_every": 1,
                       "run.checkpoint_every": 10 * TRAIN_STEPS, "data.workers": 4}.items():
        common += ["--set", f"{key}={value}"]
    for amp in ("none", "bf16"):
        train = Step(f"DANNet adaptation on CUDA, PSPNet-R101, amp {amp}")
        folder = runs / amp
        shutil.rmtree(folder, ignore_errors=True)
        run(train, [python, "-m", "train.cli", "adapt", *common, "--set", f"optim.iterations={TRAIN_STEPS}",
                    "--set", f"run.amp={amp}", "--out", str(folder)], 1800)
        if train.status == "passed":
            train.figures = step_seconds(folder / "metrics.jsonl")
        steps.append(train)
    drift = Step("dannet-train precision on CUDA, PSPNet-R101 (3 steps)")
    result = out / "precision.json"
    run(drift, [python, "-m", "train.cli", "precision", *common, "--steps", "3", "--json", str(result)], 1800)
    if result.is_file():
        drift.figures = {f"{row['amp']} step {row['step']}": {k: f"{v:.2g}" for k, v in row.items()
                                                              if k.startswith(("loss_total", "grad_"))}
                         for row in json.loads(result.read_text())}
    return steps + [drift]


def step_seconds(metrics: Path) -> dict:
    """Median and spread of the seconds between logged iterations, after the first 10."""
    times = [json.loads(line)["time"] for line in metrics.read_text().splitlines() if '"loss_total"' in line]
    gaps = sorted(b - a for a, b in zip(times[10:], times[11:]))
    if not gaps:
        return {}
    return {"step_s_p50": round(gaps[len(gaps) // 2], 4), "step_s_min": round(gaps[0], 4),
            "step_s_max": round(gaps[-1], 4), "steps_timed": len(gaps)}


def write_report(out: Path, machine: dict, steps: list[Step]) -> Path:
    atomic_write(out / "report.json", json.dumps({"machine": machine, "steps": [asdict(s) for s in steps]}, indent=1))
    lines = ["# DANNet Edge GPU check", "", *(f"- {k}: {v}" for k, v in machine.items()), "",
             "| step | status | seconds | figures / reason |", "| --- | --- | --- | --- |"]
    for s in steps:
        detail = s.reason or ", ".join(f"{k}: {v}" for k, v in s.figures.items())
        lines.append(f"| {s.name} | {s.status} | {s.seconds:.0f} | {detail} |")
    for s in steps:
        if s.output_tail:
            lines += ["", f"## {s.name}", "", f"`{s.command}`", "", "```", s.output_tail, "```"]
    return atomic_write(out / "report.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make gpu-check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu-check-report", help="report folder (default gpu-check-report/)")
    parser.add_argument("--build-dir", default="build-gpu", help="CMake build folder for this GPU (default build-gpu/)")
    parser.add_argument("--checkpoint", help="time this DANNet checkpoint instead of a random PSPNet-ResNet18")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    gpu = gpu_name()
    machine = {"date": time.strftime("%Y-%m-%d %H:%M"), "gpu (name, driver, compute capability)": gpu or "none",
               "host": f"{platform.machine()}, {os.cpu_count()} CPUs", "python": platform.python_version(),
               "torch": python_module_version(python, "torch") or "not installed",
               "tensorrt": python_module_version(python, "tensorrt") or "not installed",
               "TensorRT_ROOT": os.environ.get("TensorRT_ROOT", "unset")}
    if gpu is None:
        report = write_report(out, machine, [Step("GPU", "failed", "nvidia-smi finds no NVIDIA GPU")])
        print(f"make gpu-check: error: no NVIDIA GPU here (nvidia-smi finds none); report: {report}", file=sys.stderr)
        return 1
    build_dir = (REPO / args.build_dir).resolve()
    plugin_lib = build_dir / "plugins" / "libdannet_trt_plugins.so"
    steps: list[Step] = []
    for stage in (lambda: build_and_ctest(python, build_dir), lambda: [pytest_gpu(python, plugin_lib)],
                  lambda: engines_and_latency(python, out, plugin_lib, args.checkpoint),
                  lambda: [kernel_bench(python, out)], lambda: [multicam_bench(python, out)],
                  lambda: training_on_cuda(python, out)):
        steps += stage()
        write_report(out, machine, steps)  # a report after every stage, in case the machine goes away
        print(f"[gpu-check] {steps[-1].name}: {steps[-1].status} {steps[-1].reason}", flush=True)
    report = write_report(out, machine, steps)
    failed = [s.name for s in steps if s.status == "failed"]
    print(f"make gpu-check: {len(steps) - len(failed)} of {len(steps)} steps passed or skipped with a reason; "
          f"report: {report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
