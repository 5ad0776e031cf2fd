"""Every bad input gets one line and a documented exit code; nothing a user keeps is ever lost (issue 17).

Written from the user's side. Commands run as a user runs them: a subprocess where the process itself
is the point (signals, a full disk, a real start-up), ``main()`` in-process where the contract is the
same and a start of torch would only cost seconds. Each check is what the user sees: the exit code
(README, "Errors and exit codes"), exactly one stderr line without a traceback, and that files which
existed before are byte-identical after.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MODULES = {"dannet-train": "train.cli", "dannet-export": "export.cli", "dannet-run": "runtime.cli",
           "dannet-bench": "benchmarks.cli"}
#: the documented exit codes (README, "Errors and exit codes"), written out: the test must not read them
#: from the code it checks
USAGE, DATA, IO_ERROR, INTERNAL, SIGTERM_EXIT = 2, 3, 4, 70, 143


# -- how a user runs a command and what they see ------------------------------------------------------------

def run_command(prog: str, *args: object, env: dict[str, str] | None = None,
                timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", MODULES[prog], *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def in_process(capsys: pytest.CaptureFixture, prog: str, *args: object) -> tuple[int, str]:
    """``main(argv)`` of a command: its exit code (argparse's SystemExit included) and its stderr."""
    code, _, err = in_process_with_output(capsys, prog, *args)
    return code, err


def in_process_with_output(capsys: pytest.CaptureFixture, prog: str, *args: object) -> tuple[int, str, str]:
    """``main(argv)`` of a command: its exit code (argparse's SystemExit included), its stdout and its stderr."""
    main = __import__(MODULES[prog], fromlist=["main"]).main
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def the_error(stderr: str, prog: str) -> str:
    """The one line a failing command printed: no traceback, nothing else on stderr."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{prog}") and ": error: " in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by relative name, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def small_disk(where: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``where``: a disk that runs full (or cannot be written at all)."""
    where.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                             text=True) if os.geteuid() == 0 else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() if mounted else 'not root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` until about ``leave`` bytes are free."""
    stats = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * max(0, stats.f_bavail * stats.f_frsize - leave))


@pytest.fixture(scope="module")
def checkpoint(tiny_graphs: dict[str, Path]) -> Path:
    return tiny_graphs["checkpoint"]


@pytest.fixture(scope="module")
def onnx_model(tiny_graphs: dict[str, Path]) -> Path:
    return tiny_graphs["portable"]


# -- lost work: nothing that existed is destroyed by a failed write -----------------------------------------

def test_export_on_a_full_disk_keeps_the_existing_model(checkpoint: Path, tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "16m") as disk:
        model = disk / "dannet.onnx"
        model.write_bytes(os.urandom(2 << 20))  # the user's good model
        fill(disk, leave=4 << 20)  # the new graph is ~100 MB
        before = snapshot(disk)
        out = run_command("dannet-export", "onnx", "--checkpoint", checkpoint, "--input-size", "64x128",
                          "--output-size", "96x160", "--no-simplify", "--out", model)
        assert out.returncode == IO_ERROR, out.stderr
        line = the_error(out.stderr, "dannet-export onnx")
        assert str(model) in line and "No space left on device" in line
        assert snapshot(disk) == before  # the old model byte for byte, and no temporary left behind


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    from runtime.atomic import atomic_file, atomic_write_all
    from runtime.errors import OutputError

    target, sidecar = tmp_path / "model.engine", tmp_path / "model.engine.json"
    target.write_bytes(b"old engine")
    sidecar.write_bytes(b"old sidecar")
    with pytest.raises(OutputError, match="model.engine: cannot write"):
        with atomic_file(target) as f:
            f.write(b"half of the new")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write on a full disk fails
    assert snapshot(tmp_path) == {"model.engine": b"old engine", "model.engine.json": b"old sidecar"}

    real_fsync, calls = os.fsync, []

    def fsync_fails_the_second_time(fd: int) -> None:  # one file of the pair fails after the other was written
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", fsync_fails_the_second_time)
        with pytest.raises(OutputError, match="model.engine(.json)?: cannot write"):
            atomic_write_all({target: b"new engine", sidecar: b"new sidecar"})
    assert snapshot(tmp_path) == {"model.engine": b"old engine", "model.engine.json": b"old sidecar"}


def test_one_file_through_atomic_write_all_is_replaced_whole_or_left_as_it_was(tmp_path: Path) -> None:
    """Alone (no files it describes) the file is not removed before its rename: a rename that fails leaves the old
    file, and the error says so."""
    from runtime.atomic import atomic_write_all
    from runtime.errors import OutputError

    target = tmp_path / "model.engine.json"
    target.write_bytes(b"old sidecar")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(errno.EIO, os.strerror(errno.EIO))))
        with pytest.raises(OutputError, match="model.engine.json: cannot write .*is unchanged$"):
            atomic_write_all({target: b"new sidecar"})
    assert snapshot(tmp_path) == {"model.engine.json": b"old sidecar"}


def test_a_checkpoint_save_that_fails_keeps_the_last_good_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from train.checkpoint import load_checkpoint, save_checkpoint
    from train.models import RelightNet

    path = save_checkpoint(tmp_path / "last.pth", {"light": RelightNet(channels=4)}, iteration=1)
    before = snapshot(tmp_path)

    def save_half_then_fail(obj: object, f: io.BufferedWriter) -> None:
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(Exception, match="last.pth: cannot write"):
        save_checkpoint(path, {"light": RelightNet(channels=4)}, iteration=2)
    assert snapshot(tmp_path) == before and load_checkpoint(path).iteration == 1


def test_written_files_get_ordinary_permissions(tmp_path: Path) -> None:
    """A model written through a temporary must not end up private (mkstemp creates 0600)."""
    from train.checkpoint import save_checkpoint
    from train.models import RelightNet

    umask = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "model.pth", {"light": RelightNet(channels=4)})
        assert path.stat().st_mode & 0o777 == 0o644
        path.chmod(0o640)  # an existing file keeps the permissions its owner gave it
        save_checkpoint(path, {"light": RelightNet(channels=4)})
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)


def test_outputs_that_cannot_be_written_are_refused_before_the_work(checkpoint: Path, onnx_model: Path,
                                                                    tmp_path: Path, capsys) -> None:
    folder = tmp_path / "existing-folder"
    folder.mkdir()
    started = time.perf_counter()
    code, err = in_process(capsys, "dannet-export", "onnx", "--checkpoint", checkpoint, "--out", folder)
    assert code == IO_ERROR and "is a folder" in the_error(err, "dannet-export onnx")
    code, err = in_process(capsys, "dannet-run", "--model", onnx_model, "--input", "test://", "--stats-json", folder)
    assert code == IO_ERROR and "--stats-json" in the_error(err, "dannet-run")
    with small_disk(tmp_path / "ro", "1m", read_only=True) as ro:
        code, err = in_process(capsys, "dannet-export", "onnx", "--checkpoint", checkpoint, "--out", ro / "m.onnx")
        assert code == IO_ERROR and "Read-only file system" in the_error(err, "dannet-export onnx")
        code, err = in_process(capsys, "dannet-bench", "latency", "--model", onnx_model, "--json", ro / "l.json")
        assert code == IO_ERROR and "--json" in the_error(err, "dannet-bench latency")
    assert time.perf_counter() - started < 20  # refused up front, not after an export or a benchmark
    assert list(folder.iterdir()) == []


# -- silent wrong results ------------------------------------------------------------------------------------

def test_compare_refuses_a_checkpoint_the_graph_was_not_exported_from(checkpoint: Path, onnx_model: Path,
                                                                      tmp_path: Path) -> None:
    import torch

    other = tmp_path / "other.pth"
    torch.save(torch.load(checkpoint, weights_only=True) | {"iteration": 7}, other)  # same layout, another file
    out = run_command("dannet-bench", "compare", "--model", onnx_model, "--checkpoint", other, "--input-size",
                      "64x128", "--output-size", "96x160", "--frames", 1, "--warmup", 0)
    assert out.returncode == USAGE, out.stderr
    assert "--checkpoint" in the_error(out.stderr, "dannet-bench compare") and "exported from" in out.stderr


def test_compare_runs_the_reference_with_the_relighting_file_the_graph_was_exported_with(
        checkpoint: Path, onnx_model: Path, tmp_path: Path, capsys) -> None:
    """A released segmentation file is exported with its relighting file (``--light``), whose sha256 the graph
    records; compare's reference loop without it, or with another one, would compare two networks. Here the tiny
    graph is relabelled as if exported so (its network is the tiny segmenter + the tiny relighting net): the
    right pair runs and agrees with the graph, every other is one line naming --light before the work."""
    from dataclasses import replace

    import onnx
    import torch

    from benchmarks.compare import check_provenance
    from runtime.engine_sidecar import sha256_of
    from runtime.errors import DannetError
    from runtime.segmenter import Segmenter

    released, other = tmp_path / "released.pth", tmp_path / "other_light.pth"
    models = torch.load(checkpoint, weights_only=True)["models"]
    torch.save(models["segmenter"], released)  # a released file: the segmenter's state dict alone
    torch.save(torch.load(checkpoint, weights_only=True) | {"iteration": 7}, other)  # same nets, another file
    graph = onnx.load(str(onnx_model))
    metadata = {p.key: p.value for p in graph.metadata_props}
    onnx.helper.set_model_props(graph, {**metadata, "dannet.checkpoint_sha256": sha256_of(released),
                                        "dannet.light_sha256": sha256_of(checkpoint)})
    onnx.save(graph, str(tmp_path / "released.onnx"))

    def compare(*light: object) -> tuple[int, str, str]:
        return in_process_with_output(capsys, "dannet-bench", "compare", "--model", tmp_path / "released.onnx",
                                      "--checkpoint", released, "--backbone", "resnet18", *light, "--frames", 1,
                                      "--warmup", 0, "--json", tmp_path / "c.json")

    for light, words in (((), "was exported with a relighting file (--light, sha256"),
                         (("--light", other), "is not the relighting file")):
        code, _, err = compare(*light)
        assert code == USAGE and words in the_error(err, "dannet-bench compare"), err
    code, _, err = in_process_with_output(capsys, "dannet-bench", "compare", "--model", onnx_model, "--checkpoint",
                                          checkpoint, "--light", other, "--frames", 1, "--warmup", 0)
    assert code == USAGE and "was exported without a relighting file" in the_error(err, "dannet-bench compare")
    assert not (tmp_path / "c.json").exists()
    code, _, err = compare("--light", checkpoint)
    assert code == 0, err
    # an engine whose sidecar predates the record: nothing to check against, so it is refused, not trusted
    info = replace(Segmenter(tmp_path / "released.onnx").info, light_sha256=None)
    with pytest.raises(DannetError, match="does not record the relighting file it was exported with"):
        check_provenance("old.engine", info, str(released), str(checkpoint))
    assert json.loads((tmp_path / "c.json").read_text())["identical_pixels"] > 0.999


def test_a_flag_contradicting_the_checkpoint_is_an_error(checkpoint: Path, tmp_path: Path, capsys) -> None:
    code, err = in_process(capsys, "dannet-export", "onnx", "--checkpoint", checkpoint, "--arch", "deeplab",
                           "--out", tmp_path / "m.onnx")
    line = the_error(err, "dannet-export onnx")
    assert code == USAGE and "--arch deeplab" in line and "pspnet" in line and str(checkpoint) in line
    code, err = in_process(capsys, "dannet-export", "onnx", "--checkpoint", checkpoint, "--backbone", "resnet101",
                           "--out", tmp_path / "m.onnx")
    assert code == USAGE and "--backbone resnet101" in the_error(err, "dannet-export onnx")
    # --light for a checkpoint with its own relighting net: neither net is certainly the one meant
    code, err = in_process(capsys, "dannet-export", "onnx", "--checkpoint", checkpoint, "--light", checkpoint,
                           "--out", tmp_path / "m.onnx")
    assert code == USAGE and "holds its own relighting network, but --light" in the_error(err, "dannet-export onnx")
    code, err = in_process(capsys, "dannet-train", "eval", "--checkpoint", checkpoint, "--light", checkpoint,
                           "--dataset", "synthetic", "--root", tmp_path)
    assert code == USAGE and "drop --light" in the_error(err, "dannet-train eval")
    code, err = in_process(capsys, "dannet-bench", "confidence-cost", "--checkpoint", checkpoint, "--light",
                           checkpoint, "--size", "64x128", "--runs", 1)
    assert code == USAGE and "drop --light" in the_error(err, "dannet-bench confidence-cost")
    # every command that runs a checkpoint takes the same three flags and checks them the same way
    for command in (("sweep", "--dataset", "darkzurich-val", "--root", tmp_path, "--device", "cpu"),
                    ("submission", "--root", tmp_path, "--out", tmp_path / "s.zip", "--device", "cpu"),
                    ("confidence-cost", "--size", "64x128", "--runs", 1)):
        code, err = in_process(capsys, "dannet-bench", *command, "--checkpoint", checkpoint, "--arch", "refinenet")
        line = the_error(err, f"dannet-bench {command[0]}")
        assert code == USAGE and "holds a pspnet network, but --arch refinenet" in line, err
    assert list(tmp_path.iterdir()) == []


def test_a_backbone_no_network_has_is_named_with_its_flag(checkpoint: Path, tmp_path: Path, capsys) -> None:
    """A released file does not say its backbone, so ``--backbone`` is taken at its word, and a name that no
    network has (or that the architecture does not take) is one line naming the flag, not an internal error."""
    import torch

    released, refinenet = tmp_path / "released.pth", tmp_path / "refinenet.pth"
    torch.save(torch.load(checkpoint, weights_only=True)["models"]["segmenter"], released)
    torch.save({"clf_conv.weight": torch.zeros(19, 256, 3, 3)}, refinenet)  # recognised as RefineNet by its keys
    for path, backbone, words in ((released, "resnet34", "unknown backbone 'resnet34'"),
                                  (refinenet, "efficientnet_lite0", "does not fit refinenet")):
        code, err = in_process(capsys, "dannet-train", "eval", "--checkpoint", path, "--backbone", backbone,
                               "--dataset", "synthetic", "--root", tmp_path)
        line = the_error(err, "dannet-train eval")
        assert code == USAGE and f"{path}: --backbone {backbone}: " in line and words in line, err


def night_set(root: Path, count: int = 2, size: tuple[int, int] = (32, 48)) -> list[tuple[Path, Path]]:
    """A Dark Zurich-style night val set (images and trainId labels), as ``dannet-bench miou`` reads it."""
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(count):
        stem = f"GOPR0356_frame_{i:06d}"
        image = root / "rgb_anon/val/night/GOPR0356" / f"{stem}_rgb_anon.png"
        label = root / "gt/val/night/GOPR0356" / f"{stem}_gt_labelTrainIds.png"
        for path in (image, label):
            path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(image)
        Image.fromarray(rng.integers(0, 19, size, dtype=np.uint8)).save(label)
        pairs.append((image, label))
    return pairs


def test_a_label_that_does_not_fit_its_image_stops_the_evaluation(onnx_model: Path, tmp_path: Path, capsys) -> None:
    (_, label), *_ = night_set(tmp_path)
    Image.fromarray(np.zeros((16, 48), np.uint8)).save(label)  # a label of another size than its image
    code, err = in_process(capsys, "dannet-bench", "miou", "--model", onnx_model, "--dataset", "darkzurich-val",
                           "--root", tmp_path)
    line = the_error(err, "dannet-bench miou")
    assert code == DATA and str(label) in line and "16x48" in line and "32x48" in line
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(label)  # a colour picture instead of class ids
    code, err = in_process(capsys, "dannet-bench", "miou", "--model", onnx_model, "--dataset", "darkzurich-val",
                           "--root", tmp_path)
    assert code == DATA and "one 8-bit channel" in the_error(err, "dannet-bench miou")


def test_numbers_outside_their_range_are_refused_when_parsed(capsys) -> None:
    """Values that would produce NaN, nothing or a division by zero hours later, refused by the parser."""
    cases = [("dannet-export", ["onnx", "--checkpoint", "c.pth", "--out", "o.onnx", "--weights-std", "nan"],
              "--weights-std"),
             ("dannet-export", ["onnx", "--checkpoint", "c.pth", "--out", "o.onnx", "--weights-std", "0.6"],
              "--weights-std"),
             ("dannet-run", ["--model", "m.onnx", "--input", "test://", "--alpha", "1.5"], "--alpha"),
             ("dannet-run", ["--model", "m.onnx", "--input", "test://", "--queue-size", "0"], "--queue-size"),
             ("dannet-run", ["--model", "m.onnx", "--input", "test://", "--input-rate", "inf"], "--input-rate"),
             ("dannet-bench", ["latency", "--model", "m.onnx", "--iters", "0"], "--iters"),
             ("dannet-bench", ["miou", "--model", "m.onnx", "--dataset", "synthetic", "--root", ".",
                               "--max-images", "0"], "--max-images"),
             ("dannet-bench", ["sweep", "--checkpoint", "c.pth", "--dataset", "synthetic", "--root", ".",
                               "--stds", "0,-0.1"], "--stds"),
             ("dannet-bench", ["compare", "--model", "m.onnx", "--checkpoint", "c.pth", "--frames", "0"], "--frames"),
             ("dannet-bench", ["submission", "--checkpoint", "c.pth", "--root", ".", "--out", "s.zip",
                               "--invalid-threshold", "2"], "--invalid-threshold"),
             ("dannet-train", ["eval", "--checkpoint", "c.pth", "--dataset", "synthetic", "--root", ".",
                               "--scale", "0"], "--scale"),
             ("dannet-train", ["synth", "--out", "o", "--count", "0"], "--count")]
    for prog, argv, flag in cases:
        code, err = in_process(capsys, prog, *argv)
        assert code == USAGE and flag in the_error(err, prog), (argv, err)


def test_a_device_that_is_not_one_is_refused_naming_the_flag_before_the_work(tmp_path: Path, capsys) -> None:
    """``--device`` of the commands that run a checkpoint in PyTorch: checked before the checkpoint is read (it
    does not exist here), one line naming the flag, not the config key training uses."""
    for prog, argv in (("dannet-train", ["eval", "--dataset", "synthetic", "--root", tmp_path]),
                       ("dannet-bench", ["submission", "--root", tmp_path, "--out", tmp_path / "s.zip"]),
                       ("dannet-bench", ["sweep", "--dataset", "synthetic", "--root", tmp_path])):
        code, err = in_process(capsys, prog, *argv, "--checkpoint", tmp_path / "none.pth", "--device", "gpu")
        assert code == USAGE and "--device='gpu' is not a device (expected auto, cpu, cuda or cuda:N)" in \
            the_error(err, prog), err
    code, err = in_process(capsys, "dannet-bench", "backbones", "--checkpoint", f"resnet18={tmp_path / 'none.pth'}",
                           "--night-root", tmp_path, "--device", "gpu")
    assert code == USAGE and "--device='gpu'" in the_error(err, "dannet-bench backbones"), err


def test_the_scripts_refuse_numbers_outside_their_range_too(capsys) -> None:
    """The experiment and the GPU check are run by hand like the commands: the same parse-time checks."""
    from benchmarks.synthetic_experiment import main as experiment

    for argv, flag in ((["--count", "0"], "--count"), (["--size", "big"], "--size"), (["--seed", "-1"], "--seed")):
        with pytest.raises(SystemExit) as e:
            experiment(argv)
        assert e.value.code == USAGE and f"argument {flag}: expected" in capsys.readouterr().err
    for factor in ("0", "nan"):
        run = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--timeout-factor", factor],
                             capture_output=True, text=True)
        assert run.returncode == USAGE and "argument --timeout-factor: expected a number > 0" in run.stderr


def test_a_config_value_that_would_divide_by_zero_is_refused(tmp_path: Path, capsys) -> None:
    code, err = in_process(capsys, "dannet-train", "pretrain", "--config", "synthetic-cpu", "--out", tmp_path / "run",
                           "--set", "run.checkpoint_every=0")
    line = the_error(err, "dannet-train pretrain")
    assert code == USAGE and "run.checkpoint_every" in line and ">= 1" in line
    assert not (tmp_path / "run").exists()


def test_a_run_folder_that_is_a_file_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "picture.png"
    out.write_bytes(b"not a run")
    code, err = in_process(capsys, "dannet-train", "pretrain", "--config", "synthetic-cpu", "--out", out)
    assert code == USAGE and f"--out {out}: a file; expected the run's folder" in the_error(err, "dannet-train pretrain")
    assert out.read_bytes() == b"not a run"


def test_a_run_refused_for_its_init_file_leaves_no_folder(tmp_path: Path, capsys) -> None:
    """The run's folder and config.yaml are written once its networks, data and --init files were read."""
    from train.data.synth import generate

    data = tmp_path / "data"
    for layout in ("cityscapes", "darkzurich"):
        generate(data / layout, layout, 1, (32, 64), seed=0)
    code, err = in_process(capsys, "dannet-train", "adapt", "--config", "synthetic-cpu", "--init", tmp_path / "no.pth",
                           "--set", f"data.source.root={data / 'cityscapes'}", "--set",
                           f"data.target.root={data / 'darkzurich'}", "--out", tmp_path / "run")
    assert code == USAGE and f"{tmp_path / 'no.pth'}: no such checkpoint file" in the_error(err, "dannet-train adapt")
    assert not (tmp_path / "run").exists()


def test_a_misspelt_option_is_refused_before_the_run_starts(tmp_path: Path, capsys) -> None:
    """``eval.reweight`` is first read at the first validation: misspelt, it stopped the run there, as an internal
    error, with the iterations since the last checkpoint lost. Refused with the config, naming the values."""
    code, err = in_process(capsys, "dannet-train", "adapt", "--config", "synthetic-cpu", "--out", tmp_path / "run",
                           "--set", "eval.reweight=prob")
    line = the_error(err, "dannet-train adapt")
    assert code == USAGE and "'eval.reweight' must be one of logits, probs, got 'prob'" in line
    assert not (tmp_path / "run").exists()


# -- dannet-run: no input image lost or overwritten -------------------------------------------------------

def image_folder(folder: Path, names: Sequence[str]) -> Path:
    """A folder of small random pictures named ``names`` (the suffix says the format)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(folder / name)
    return folder


def summary_in(stats_json: Path) -> dict:
    """The summary, the last line of ``--stats-json``."""
    summary = json.loads(stats_json.read_text().splitlines()[-1])
    assert summary["summary"] is True
    return summary


@pytest.mark.timeout(120)  # a folder without a readable image, looped for ever, must not loop for ever
def test_an_unreadable_image_is_skipped_named_and_counted_and_the_others_are_written(onnx_model: Path,
                                                                                     tmp_path: Path, capsys) -> None:
    """An image cut short and a macOS ``._`` file among good ones, the ``._`` file first in name order: each is
    skipped with a warning naming it, every other image is written, the summary counts the skips (per camera),
    and the exit code (3, a data problem) tells a script that the outputs are not complete. A folder with no
    readable image ends after one pass even with --loop -1."""
    frames = image_folder(tmp_path / "frames", ["a.png", "c.png", "d.png"])
    whole = (frames / "a.png").read_bytes()
    (frames / "b.png").write_bytes(whole[: len(whole) // 2])
    (frames / "._a.png").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # AppleDouble metadata, not a PNG
    clean = image_folder(tmp_path / "clean", ["e.png", "f.png"])
    stats = tmp_path / "stats.jsonl"
    run = ["--model", onnx_model, "--stats-interval", 0, "--stats-json", stats]
    code, out, err = in_process_with_output(capsys, "dannet-run", *run, "--input", frames, "--output",
                                            f"{tmp_path}/out/")
    assert code == DATA and "2 images could not be read" in the_error(err, "dannet-run")
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and str(frames / "._a.png") in warnings[0] and str(frames / "b.png") in warnings[1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png", "d.png"]
    summary = summary_in(stats)
    assert (summary["unreadable"], summary["written"]) == (2, 3)
    code, _, err = in_process_with_output(capsys, "dannet-run", *run, "--input", clean, "--output", "null://",
                                          "--input", frames, "--output", "null://")
    assert code == DATA and "2 images could not be read" in the_error(err, "dannet-run")
    cameras = summary_in(stats)["cameras"]
    assert [(camera["unreadable"], camera["written"]) for camera in cameras] == [(0, 2), (2, 3)]
    # looped: each unreadable file is said and counted once, not once per pass
    code, out, err = in_process_with_output(capsys, "dannet-run", *run, "--input", frames, "--loop", 2)
    assert code == DATA and "2 images could not be read" in the_error(err, "dannet-run")
    assert out.count("warning:") == 2 and summary_in(stats)["written"] == 9  # the first pass and two more
    # nothing readable at all, looped for ever: one pass, not a warning for ever
    (tmp_path / "junk").mkdir()
    (frames / "b.png").rename(tmp_path / "junk" / "b.png")
    code, out, err = in_process_with_output(capsys, "dannet-run", *run, "--input", tmp_path / "junk", "--loop", -1)
    assert code == DATA and "1 image could not be read" in the_error(err, "dannet-run")
    assert "no frame was written" in the_error(err, "dannet-run")
    assert out.count("warning:") == 1


def test_an_output_that_would_write_over_an_input_is_refused_before_the_work(onnx_model: Path, tmp_path: Path,
                                                                             capsys) -> None:
    """An image output into its own input folder (as a folder, a pattern or the one file), a video given again
    as its output, --confidence-out into the input folder, one camera writing into another's input folder: one
    line naming the output's flag, the input and the file, exit 2, and not a byte written."""
    frames = image_folder(tmp_path / "frames", ["00001.png", "night.png"])
    other = image_folder(tmp_path / "other", ["night.png"])
    clip = tmp_path / "clip.mkv"
    clip.write_bytes(b"a video: refused before it is opened")
    before = snapshot(tmp_path)
    cases = [
        (["--input", frames, "--output", frames], "--output", frames / "00001.png"),
        (["--input", f"{frames}/*.png", "--output", f"file://{frames}/"], "--output", frames / "00001.png"),
        (["--input", frames, "--output", f"{frames}/%05d.png"], "--output", frames / "00001.png"),  # 2nd frame
        (["--input", frames / "night.png", "--output", frames / "night.png"], "--output", frames / "night.png"),
        (["--input", clip, "--output", f"file://{clip}"], "--output", clip),
        (["--input", frames, "--confidence-out", f"{frames}/"], "--confidence-out", frames / "00001.png"),
        (["--input", other, "--output", f"{tmp_path}/out/", "--input", frames, "--output", other], "--output",
         other / "night.png"),
    ]
    for argv, flag, overwritten in cases:
        code, err = in_process(capsys, "dannet-run", "--model", onnx_model, *argv)
        line = the_error(err, "dannet-run")
        assert code == USAGE and f"{flag} " in line and "--input" in line and f"{overwritten}," in line, line
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_one_image_file_output_for_several_frames_is_refused_before_the_work(onnx_model: Path, tmp_path: Path,
                                                                               capsys) -> None:
    """``--output out.png`` holds one frame: for an input with several (images, a video, a camera, one image read
    again with --loop, each of several cameras) it is refused up front, in one line naming the flag and a pattern
    to use instead, with nothing written; a single image (or --frames 1) still writes the one file."""
    frames = image_folder(tmp_path / "frames", ["a.png", "b.png"])
    clip = tmp_path / "clip.mkv"
    clip.write_bytes(b"a video: refused before it is opened")
    out = tmp_path / "out"
    cases = [
        (["--input", frames, "--output", f"{out}.png"], "--output"),
        (["--input", clip, "--output", f"file://{out}.png"], "--output"),
        (["--input", "test://", "--output", f"{out}.png"], "--output"),
        (["--input", frames / "a.png", "--loop", 1, "--output", f"{out}.png"], "--output"),
        (["--input", frames, "--output", f"{out}/", "--confidence-out", f"{out}.png"], "--confidence-out"),
        (["--input", "test://", "--output", f"{out}/a/", "--input", frames, "--output", f"{out}.png"], "--output"),
    ]
    for argv, flag in cases:
        code, err = in_process(capsys, "dannet-run", "--model", onnx_model, *argv)
        line = the_error(err, "dannet-run")
        assert code == USAGE and line.startswith(f"dannet-run: error: {flag} ") and f"{out}.png" in line, line
        assert f"{out}/%05d.png" in line, line
    assert not out.exists() and not Path(f"{out}.png").exists()
    for argv in (["--input", frames / "a.png"], ["--input", frames, "--frames", 1]):
        code, err = in_process(capsys, "dannet-run", "--model", onnx_model, *argv, "--output", f"{out}.png",
                               "--stats-interval", 0)
        assert code == 0 and Image.open(f"{out}.png").size == (48, 32), err
        Path(f"{out}.png").unlink()


def test_input_images_that_would_share_an_output_file_are_refused(onnx_model: Path, tmp_path: Path,
                                                                  capsys) -> None:
    """An image folder output keeps the input names: ``a.png`` and ``a.jpg``, or ``x/frame.png`` and
    ``y/frame.png`` from one glob, would be written to one file, the second over the first. Refused up front,
    naming both; a pattern output names by index and writes both."""
    same = image_folder(tmp_path / "same", ["a.jpg", "a.png"])
    for folder in ("x", "y"):
        image_folder(tmp_path / "data" / folder, ["frame.png"])
    out = tmp_path / "out"
    cases = [
        (["--input", same, "--output", f"{out}/"], same / "a.jpg", same / "a.png"),
        (["--input", f"{tmp_path}/data/*/frame.png", "--confidence-out", out], tmp_path / "data" / "x" / "frame.png",
         tmp_path / "data" / "y" / "frame.png"),
    ]
    for argv, first, second in cases:
        code, err = in_process(capsys, "dannet-run", "--model", onnx_model, *argv)
        line = the_error(err, "dannet-run")
        assert code == USAGE and str(first) in line and str(second) in line, line
    assert not out.exists()
    code, err = in_process(capsys, "dannet-run", "--model", onnx_model, "--input", same, "--output",
                           f"{out}/%05d.png", "--stats-interval", 0)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png"]


def test_a_looped_pass_over_an_image_folder_output_is_refused(onnx_model: Path, tmp_path: Path, capsys) -> None:
    """An image folder output names each picture after its input image, so a second pass (--loop) would write over
    the first one's pictures: refused up front (on --confidence-out too, and for one camera of several), naming the
    flag and a pattern that numbers every frame; --frames within the first pass, or a pattern, writes them all."""
    frames = image_folder(tmp_path / "frames", ["a.png", "b.png"])
    out = tmp_path / "out"
    cases = [
        (["--input", frames, "--output", f"{out}/"], "--output"),
        (["--input", frames / "a.png", "--output", f"{out}/"], "--output"),
        (["--input", frames, "--output", f"{out}/p/%05d.png", "--confidence-out", f"{out}/"], "--confidence-out"),
        (["--input", "test://", "--output", f"{out}/t/", "--input", frames, "--output", f"{out}/"], "--output"),
    ]
    for argv, flag in cases:
        code, err = in_process(capsys, "dannet-run", "--model", onnx_model, *argv, "--loop", 1)
        line = the_error(err, "dannet-run")
        assert code == USAGE and line.startswith(f"dannet-run: error: {flag} {out}/") and "--loop" in line, line
        assert f"{out}/%05d.png" in line, line
    assert not out.exists()
    for argv, written in ((["--output", f"{out}/", "--frames", 2], ["a.png", "b.png"]),
                          (["--output", f"{out}/%05d.png"], [f"{i:05d}.png" for i in range(4)])):
        code, err = in_process(capsys, "dannet-run", "--model", onnx_model, "--input", frames, "--loop", 1, *argv,
                               "--stats-interval", 0)
        assert code == 0 and sorted(p.name for p in out.iterdir()) == written, err
        shutil.rmtree(out)


def test_stats_json_in_a_folder_still_to_be_made_is_written(onnx_model: Path, tmp_path: Path, capsys) -> None:
    """--stats-json creates its missing folders like every other output, rather than failing once the run has
    started."""
    frames = image_folder(tmp_path / "frames", ["a.png"])
    stats = tmp_path / "new" / "deeper" / "stats.jsonl"
    code, err = in_process(capsys, "dannet-run", "--model", onnx_model, "--input", frames, "--stats-interval", 0,
                           "--stats-json", stats)
    assert code == 0, err
    assert summary_in(stats)["written"] == 1


# -- tracebacks instead of messages --------------------------------------------------------------------------

def corrupt_png(array: np.ndarray) -> bytes:
    """A PNG whose chunks have valid checksums but whose compressed pixel data is garbage."""
    encoded = io.BytesIO()
    Image.fromarray(array).save(encoded, format="PNG")
    data, chunks, pos = encoded.getvalue(), [], 8
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IDAT":
            body = body[:2] + bytes(b ^ 0x5A for b in body[2:])
        chunks.append(struct.pack(">I", length) + kind + body + struct.pack(">I", zlib.crc32(kind + body)))
        pos += 12 + length
    return data[:8] + b"".join(chunks)


def test_a_damaged_image_is_named_and_stops_the_run_cleanly(onnx_model: Path, tmp_path: Path) -> None:
    _, (image, _) = night_set(tmp_path)
    image.write_bytes(corrupt_png(np.asarray(Image.open(image))))
    out = run_command("dannet-bench", "miou", "--model", onnx_model, "--dataset", "darkzurich-val", "--root",
                      tmp_path, env={"TQDM_DISABLE": "1"})  # progress bars off: stderr is then the error alone
    assert out.returncode == DATA, out.stderr
    assert str(image) in the_error(out.stderr, "dannet-bench miou")


def test_a_validation_that_fails_keeps_the_checkpoint_of_its_iteration(tmp_path: Path, capsys) -> None:
    """Validation ran before the checkpoint of the same iteration was written: a night image damaged since the run
    started stopped it there and lost every iteration since the previous checkpoint. Now the checkpoint is on
    disk first, and the error names the image."""
    from train.data.synth import generate

    source = generate(tmp_path / "cityscapes", "cityscapes", 2, (48, 64), seed=0)
    (image, _), _ = night_set(tmp_path / "val")
    image.write_bytes(corrupt_png(np.asarray(Image.open(image))))  # the header reads; the pixels do not decode
    out = tmp_path / "run"
    settings = {"data.source.root": source, "data.source.crop": "[32, 32]", "pretrain.val_dataset": "darkzurich-val",
                "pretrain.val_root": tmp_path / "val", "data.val.scale": 1.0, "pretrain.iterations": 4,
                "run.val_every": 2, "run.checkpoint_every": 2}
    code, err = in_process(capsys, "dannet-train", "pretrain", "--config", "synthetic-cpu", "--out", out,
                           *[a for key, value in settings.items() for a in ("--set", f"{key}={value}")])
    assert code == DATA and str(image) in err.strip().splitlines()[-1]
    assert [p.name for p in (out / "checkpoints").glob("*.pth")] == ["checkpoint_0000002.pth"]


def test_a_damaged_image_read_by_a_loader_worker_is_still_one_line_naming_it(tmp_path: Path) -> None:
    """Training reads through DataLoader workers, which re-raise a worker's error with its traceback."""
    from torch.utils.data import DataLoader

    from train.data import DatasetError, EvalTransform, build_dataset

    _, (image, _) = night_set(tmp_path)
    image.write_bytes(corrupt_png(np.asarray(Image.open(image))))
    loader = DataLoader(build_dataset("darkzurich-val", tmp_path, transform=EvalTransform(scale=1.0)), num_workers=1)
    with pytest.raises(DatasetError) as error:
        list(loader)
    assert str(image) in str(error.value) and "\n" not in str(error.value) and error.value.exit_code == DATA


def test_files_that_are_not_what_they_claim(tmp_path: Path, capsys) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("these are my notes, not weights\n")
    out = run_command("dannet-train", "info", text)
    assert out.returncode == USAGE and "not a PyTorch checkpoint" in the_error(out.stderr, "dannet-train info")
    code, err = in_process(capsys, "dannet-export", "engine", "--onnx", text, "--out", tmp_path / "e.engine")
    assert code == USAGE and "not an ONNX graph" in the_error(err, "dannet-export engine")
    code, err = in_process(capsys, "dannet-train", "info", tmp_path)  # a run's folder for the checkpoint in it
    assert code == USAGE and f"{tmp_path}: a folder; expected a checkpoint file (a run's checkpoints are " \
                             f"{tmp_path / 'final.pth'}" in the_error(err, "dannet-train info")


def test_every_dannet_bench_error_is_one_line(onnx_model: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = run_command("dannet-bench", "latency", "--model", tmp_path / "missing.onnx")
    assert out.returncode == USAGE and "missing.onnx" in the_error(out.stderr, "dannet-bench latency")
    (tmp_path / "empty").mkdir()
    code, err = in_process(capsys, "dannet-bench", "miou", "--model", onnx_model, "--dataset", "darkzurich-val",
                           "--root", tmp_path / "empty")
    assert code == DATA and "rgb_anon" in the_error(err, "dannet-bench miou")
    code, err = in_process(capsys, "dannet-bench", "compare", "--model", onnx_model, "--checkpoint", checkpoint,
                           "--input-size", "32x64")
    assert code == USAGE and "64x128" in the_error(err, "dannet-bench compare")
    code, err = in_process(capsys, "dannet-bench", "sweep", "--checkpoint", tmp_path / "missing.pth", "--dataset",
                           "synthetic", "--root", tmp_path)
    assert code == USAGE and "missing.pth" in the_error(err, "dannet-bench sweep")


def test_an_internal_error_is_one_line_and_its_traceback_comes_with_debug(checkpoint: Path, tmp_path: Path,
                                                                         capsys, monkeypatch) -> None:
    import export.onnx_export

    def a_bug(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(export.onnx_export, "deployment_model", a_bug)
    argv = ["onnx", "--checkpoint", checkpoint, "--out", tmp_path / "m.onnx"]
    code, err = in_process(capsys, "dannet-export", *argv)
    assert code == INTERNAL and "--debug" in the_error(err, "dannet-export onnx")
    code, err = in_process(capsys, "dannet-export", *argv, "--debug")
    assert code == INTERNAL and "Traceback" in err and "ZeroDivisionError" in err


# -- hangs and races in the runtime ----------------------------------------------------------------------------

def frames_in(video: Path) -> int:
    """How many frames GStreamer decodes from ``video`` (in a separate process, as a player would)."""
    code = ("import gi, sys; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None)\n"
            f"p = Gst.parse_launch('filesrc location={video} ! decodebin ! fakesink name=s signal-handoffs=true')\n"
            "n = []; p.get_by_name('s').connect('handoff', lambda *a: n.append(1)); p.set_state(Gst.State.PLAYING)\n"
            "p.get_bus().timed_pop_filtered(20 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)\n"
            "p.set_state(Gst.State.NULL); print(len(n))")
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout)


def test_a_disk_filling_up_mid_stream_stops_the_run_and_keeps_a_playable_video(onnx_model: Path,
                                                                               tmp_path: Path) -> None:
    pytest.importorskip("gi")
    with small_disk(tmp_path / "disk", "400k") as disk:
        video = disk / "night.mp4"
        started = time.perf_counter()
        out = run_command("dannet-run", "--model", onnx_model, "--input", "test://", "--output", f"file://{video}",
                          "--bitrate", 20000, "--frames", 1000, "--stats-interval", 0, timeout=120)
        assert out.returncode == IO_ERROR, out.stderr
        assert str(video) in the_error(out.stderr, "dannet-run")
        assert time.perf_counter() - started < 60  # stopped when the disk filled, not at --frames or never
        assert frames_in(video) > 0


def pipeline_running(command: list[str]) -> subprocess.Popen:
    """``dannet-run`` started and past its start-up: its first line (input -> backend -> output), printed once
    the pipeline's signal handlers are installed."""
    process = subprocess.Popen([sys.executable, "-m", "runtime.cli", *command], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    watchdog = threading.Timer(90, process.kill)
    watchdog.start()
    line = process.stdout.readline()
    watchdog.cancel()
    assert " -> " in line, (line, process.stderr.read() if process.poll() is not None else "")
    return process


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_repeated_signals_end_dannet_run_with_the_documented_code(signum: int, onnx_model: Path) -> None:
    """Ctrl-C (or SIGTERM) again and again until it exits: the first stops cleanly, the second skips the
    queue, the rest must change nothing: exit 0, as documented, never a traceback or the raw signal."""
    process = pipeline_running(["--model", str(onnx_model), "--input", "test://", "--output", "null://",
                                "--stats-interval", "0"])
    deadline = time.perf_counter() + 60
    while process.poll() is None and time.perf_counter() < deadline:
        process.send_signal(signum)
        time.sleep(0.01)
    if process.poll() is None:
        process.kill()
    _, stderr = process.communicate()
    assert process.returncode == 0, (process.returncode, stderr)
    assert "Traceback" not in stderr


def test_a_signal_during_export_exits_143_and_keeps_the_old_model(checkpoint: Path, tmp_path: Path) -> None:
    model = tmp_path / "dannet.onnx"
    model.write_bytes(b"the user's good model")
    process = subprocess.Popen([sys.executable, "-m", "export.cli", "onnx", "--checkpoint", str(checkpoint),
                                "--input-size", "64x128", "--output-size", "96x160", "--no-simplify", "--out",
                                str(model)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert "[1/4] exporting" in process.stdout.readline()  # the checkpoint is loaded; the export is under way
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == SIGTERM_EXIT, stderr
    assert "SIGTERM" in the_error(stderr, "dannet-export onnx")
    assert snapshot(tmp_path) == {"dannet.onnx": b"the user's good model"}


# -- one size convention ---------------------------------------------------------------------------------------

def test_the_old_width_first_size_is_refused_with_a_hint(onnx_model: Path, capsys) -> None:
    out = run_command("dannet-run", "--model", onnx_model, "--input", "test://", "--input-size", "1280x720",
                      "--frames", 1, timeout=60)
    line = the_error(out.stderr, "dannet-run")
    assert out.returncode == USAGE and "HxW" in line and "720x1280" in line
    from runtime.cli import build_parser

    assert build_parser().parse_args(["--model", "m", "--input", "i", "--input-size", "720x1280"]).input_size == \
        (720, 1280)
    code, err = in_process(capsys, "dannet-bench", "latency", "--model", onnx_model, "--input-size", "wide")
    assert code == USAGE and "HxW" in the_error(err, "dannet-bench latency")


def test_forked_children_get_pythons_own_signal_handling_back() -> None:
    """A command owns SIGINT/SIGTERM (``exit_on_signals``), but its forked children, DataLoader workers, must
    not: Ctrl-C reaches them too, and torch's worker loop catches only KeyboardInterrupt. With our handler a
    worker died with a traceback, the main process got "worker exited unexpectedly" mid-step, and training
    ended with exit 70 instead of saving its checkpoint and exiting 130."""
    code = ("import os, signal\n"
            "from runtime.errors import exit_on_signals, raise_interrupted\n"
            "exit_on_signals()\n"
            "assert signal.getsignal(signal.SIGINT) is raise_interrupted\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    ok = (signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
            "          and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)\n"
            "    os._exit(0 if ok else 1)\n"
            "_, status = os.waitpid(pid, 0)\n"
            "raise SystemExit(os.waitstatus_to_exitcode(status))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
