"""Checkpoint loading and saving: both formats, and every way a file can be unusable."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.checkpoint import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from train.models import Discriminator, RelightNet, build_segmenter


class RunsCode:
    """Unpickling this object would create a directory: the canary for code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_round_trip_our_format(tmp_path: Path) -> None:
    seg, light = build_segmenter("pspnet", backbone="resnet18"), RelightNet()
    opt = torch.optim.SGD(seg.parameters(), lr=0.1, momentum=0.9)
    seg(torch.randn(2, 3, 33, 33)).mean().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "run" / "ckpt.pth", {"segmenter": seg, "light": light}, arch="pspnet",
                           optimizers={"seg": opt}, iteration=123, config={"model": {"arch": "pspnet"}})
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pth"]  # no temporary file left behind
    ckpt = load_checkpoint(path)
    assert not ckpt.released and ckpt.arch == "pspnet" and ckpt.iteration == 123
    assert ckpt.config == {"model": {"arch": "pspnet"}}
    fresh = build_segmenter("pspnet", backbone="resnet18")
    load_weights(fresh, ckpt.models["segmenter"], path)
    for (k, a), b in zip(seg.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    opt2 = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(ckpt.optimizers["seg"])
    assert len(opt2.state) == len(opt.state)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_released_files_are_recognised(tmp_path: Path, prefix: str) -> None:
    for name, module, role, arch in (("dannet_psp.pth", build_segmenter("pspnet", backbone="resnet18"), "segmenter", "pspnet"),
                                     ("dannet_deeplab.pth", build_segmenter("deeplab", backbone="resnet18"), "segmenter", "deeplab"),
                                     ("dannet_refinenet.pth", build_segmenter("refinenet", backbone="resnet18"), "segmenter", "refinenet"),
                                     ("dannet_psp_light.pth", RelightNet(), "light", None),
                                     ("disc.pth", Discriminator(19), "discriminator", None)):
        torch.save({prefix + k: v for k, v in module.state_dict().items()}, tmp_path / name)
        ckpt = load_checkpoint(tmp_path / name)
        assert ckpt.released and list(ckpt.models) == [role] and ckpt.arch == arch
        assert not any(k.startswith("module.") for k in ckpt.models[role])


def test_code_running_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert not marker.exists()
    message = str(e.value)
    assert str(path) in message and "run code" in message and "\n" not in message


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.pth"
    save_checkpoint(path, {"light": RelightNet()})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pth")
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="no known DANNet network"):
        load_checkpoint(tmp_path / "other.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="neither"):
        load_checkpoint(tmp_path / "list.pth")


def test_wrong_architecture_never_loads_partially(tmp_path: Path) -> None:
    deeplab = build_segmenter("deeplab", backbone="resnet18").state_dict()
    psp = build_segmenter("pspnet", backbone="resnet18")
    before = {k: v.clone() for k, v in psp.state_dict().items()}
    with pytest.raises(CheckpointError) as e:
        load_weights(psp, deeplab, tmp_path / "dannet_deeplab.pth")
    message = str(e.value)
    assert "dannet_deeplab.pth" in message and "PSPNet" in message and "\n" not in message
    assert "missing keys (" in message and "unexpected keys (" in message and "more" in message
    for k, v in psp.state_dict().items():
        assert torch.equal(v, before[k]), k
    # same keys, other widths: a resnet50 file into a resnet101 model is a shape problem, also refused
    with pytest.raises(CheckpointError, match="missing keys"):
        load_weights(build_segmenter("pspnet", backbone="resnet101"),
                     build_segmenter("pspnet", backbone="resnet50").state_dict(), "r50.pth")


def test_cli_info(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pth", {"light": RelightNet()}, iteration=7)
    ok = subprocess.run([sys.executable, "-m", "train.cli", "info", str(path)], capture_output=True, text=True)
    assert ok.returncode == 0 and "iteration 7" in ok.stdout and "light" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "train.cli", "info", str(tmp_path / "x.pth")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such checkpoint" in bad.stderr
