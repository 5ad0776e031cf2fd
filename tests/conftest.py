"""Shared pytest fixtures (the tiny exports built once per run), helpers, and the GPU/TensorRT skip rules."""
from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: the exact state-dict layouts of the DANNet reference networks (outside the repo, in ../shared)
REFERENCE_LAYOUTS = REPO.parent / "shared" / "reference" / "state_dict"


def reference_layout(name: str) -> list[tuple[str, tuple[int, ...]]]:
    """``[(key, shape)]`` of a reference network, from ``shared/reference/state_dict/<name>.txt``."""
    path = REFERENCE_LAYOUTS / f"{name}.txt"
    if not path.is_file():
        pytest.skip(f"reference layout {path} not present")
    rows = []
    for line in path.read_text().splitlines():
        key, shape, _dtype = line.split("\t")
        rows.append((key, () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))))
    return rows


def last_step_s(out: Path) -> float:
    """The wall-clock seconds between the last two steps a training run logged (``run.log_every=1``): what a run
    that stops at the first step ending past its time limit may overshoot it by, on a machine as loaded as it was."""
    before, last = (json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()[-2:])
    assert last["iteration"] == before["iteration"] + 1 and "val_miou" not in last, "log every step, no validation"
    return last["time"] - before["time"]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs two workers), one torch/OpenMP thread per worker and per process it
    starts: two workers with two threads each on two cores wait on each other's spinning threads. ONNX Runtime
    ignores OMP_NUM_THREADS: its sessions still take a thread per core unless a test passes ``threads``."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def torch_threads_restored() -> Iterator[None]:
    """A test that changes torch's thread count (a command run in-process with ``--threads``) hands its worker
    back with the count it found, so the tests after it keep the one thread ``pytest_configure`` chose."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch
        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    try:
        import tensorrt  # noqa: F401
        has_trt = has_gpu
    except ImportError:
        has_trt = False
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
        if "tensorrt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT and a CUDA GPU"))


#: the tiny graphs' sizes, which every export of the tiny checkpoint below shares
TINY_SIZES = dict(input_size=(64, 128), output_size=(96, 160))


def built_once(name: str, build: Callable[[Path], dict[str, Path]],
               tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``build(folder)``'s files, built by the first pytest-xdist worker that asks and read by the others (the
    pattern of pytest-xdist's documentation): a session fixture runs once per worker, and the tiny exports take
    10-30 s each on 2 cores. The folder is this run's (``pytest-N/``, which the workers share), never an earlier
    run's; without xdist it is built here. The files are shared: tests only read them."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent
    record = shared / f"{name}.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if build raises
        if not record.is_file():
            (shared / name).mkdir(exist_ok=True)  # (left by a worker whose build failed)
            built = json.dumps({key: str(path) for key, path in build(shared / name).items()})
            partial = shared / f"{name}.json.partial"
            partial.write_text(built)
            os.replace(partial, record)  # whole or absent: a write cut short is never read as the record
    return {key: Path(path) for key, path in json.loads(record.read_text()).items()}


@pytest.fixture(scope="session")
def tiny_graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small PSPNet-ResNet18 + relighting checkpoint and its exports (64x128 in, 96x160 out):
    ``checkpoint``, ``portable`` and ``plugin``."""
    def build(root: Path) -> dict[str, Path]:
        import torch

        from export import ExportSpec, to_onnx
        from train.checkpoint import save_checkpoint
        from train.models import RelightNet, build_segmenter

        torch.manual_seed(0)
        ckpt = save_checkpoint(root / "tiny.pth", {"segmenter": build_segmenter("pspnet", backbone="resnet18").eval(),
                                                   "light": RelightNet(channels=16).eval()}, arch="pspnet",
                               config={"model": {"backbone": "resnet18"}})
        return {"checkpoint": ckpt,
                "portable": to_onnx(ckpt, root / "tiny.onnx", ExportSpec(**TINY_SIZES), say=lambda s: None),
                "plugin": to_onnx(ckpt, root / "tiny_plugin.onnx", ExportSpec(**TINY_SIZES, tail="plugin"),
                                  say=lambda s: None)}
    return built_once("tiny", build, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_program(tiny_graphs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint as a .pt2 program (dannet-export pt2), at the tiny graphs' sizes."""
    def build(root: Path) -> dict[str, Path]:
        from export import ExportSpec, to_torch_program

        return {"program": to_torch_program(tiny_graphs["checkpoint"], root / "tiny.pt2", ExportSpec(**TINY_SIZES),
                                             say=lambda s: None)}
    return built_once("pt2", build, tmp_path_factory)["program"]


@pytest.fixture(scope="session")
def tiny_dynamic(tiny_graphs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint as a portable graph with a dynamic batch (for several cameras) at the tiny sizes."""
    def build(root: Path) -> dict[str, Path]:
        from export import ExportSpec, to_onnx

        return {"onnx": to_onnx(tiny_graphs["checkpoint"], root / "dynamic.onnx",
                                ExportSpec(**TINY_SIZES, dynamic=True), say=lambda s: None)}
    return built_once("dynamic", build, tmp_path_factory)["onnx"]


@pytest.fixture(scope="session")
def tiny_confidence(tiny_graphs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny checkpoint made unsure (tests/confidence_checkpoint.py): ``checkpoint``, and ``onnx``, its
    portable graph exported with --confidence at the tiny sizes."""
    def build(root: Path) -> dict[str, Path]:
        from confidence_checkpoint import unsure

        from export import ExportSpec, to_onnx

        checkpoint = unsure(tiny_graphs["checkpoint"], root / "unsure.pth")
        return {"checkpoint": checkpoint,
                "onnx": to_onnx(checkpoint, root / "confidence.onnx", ExportSpec(**TINY_SIZES, confidence=True),
                                say=lambda s: None)}
    return built_once("confidence", build, tmp_path_factory)
