"""``model.frozen_stages``: the backbone's stem and its first stages keep the weights and BatchNorm statistics they
were loaded with through training (pre-training and DANNet adaptation alike), while everything above them trains."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from train.checkpoint import load_checkpoint, save_checkpoint
from train.cli import main as train_main
from train.config import ConfigError, load_config
from train.models import build_segmenter

from test_training import cli_args, data  # noqa: F401  (the generated day and night data, 4 each at 64x128)

#: state-dict prefixes of the stem of each backbone family
STEMS = {"resnet18": ("conv1.", "bn1.", "conv2.", "bn2.", "conv3.", "bn3."),
         "efficientnet_lite0": ("stem_conv.", "stem_bn.")}


def randomised_statistics(module: torch.nn.Module) -> torch.nn.Module:
    """BatchNorm statistics unlike those of a batch, so that using the batch's instead shows."""
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return module


@pytest.mark.parametrize("backbone", list(STEMS))
def test_a_frozen_stage_computes_with_its_loaded_statistics_and_gets_no_gradient(backbone: str) -> None:
    torch.manual_seed(0)
    model = randomised_statistics(build_segmenter("pspnet", backbone=backbone))
    reference = randomised_statistics(build_segmenter("pspnet", backbone=backbone)).eval()
    reference.load_state_dict(model.state_dict())
    model.freeze_stages(2)
    model.train()  # as a training job does, and again after each validation
    x = torch.randn(2, 3, 64, 64)
    l1, l2, l3, _ = model.forward_features(x)
    with torch.no_grad():
        r1, r2, r3, _ = reference.forward_features(x)
    torch.testing.assert_close(l2, r2)  # what eval mode computes: the loaded statistics, not the batch's
    assert not torch.allclose(l3, r3, atol=1e-3)  # layer3 trains: it normalises with the batch's
    sum(out.square().mean() for out in model.forward_with_aux(x)).backward()
    for name, p in model.named_parameters():
        frozen = name.startswith((*STEMS[backbone], "layer1.", "layer2."))
        assert (p.grad is None) == frozen, name
    first_bn = [next(m for m in net.layer2.modules() if isinstance(m, torch.nn.BatchNorm2d))
                for net in (model, reference)]
    assert torch.equal(first_bn[0].running_mean, first_bn[1].running_mean)  # a training forward left them alone


def test_four_stages_are_the_whole_trunk_top_conv_included_and_frozen_once() -> None:
    model = build_segmenter("deeplab", backbone="efficientnet_lite0")  # the Lite0 trunk with its 1280-channel top
    model.freeze_stages(4)
    model.train()
    trunk = [p for name in model.trunk_modules for p in getattr(model, name).parameters()]
    assert not model.top_bn.training and not any(p.requires_grad for p in trunk)
    assert all(p.requires_grad for p in model.layer6.parameters())  # the heads train
    with pytest.raises(ValueError, match="frozen already"):
        model.freeze_stages(1)  # thawing would leave layer2..4's weights fixed and their statistics drifting


@pytest.mark.parametrize("job", ["pretrain", "adapt"])
def test_training_leaves_the_frozen_stages_as_loaded(data: Path, tmp_path: Path, job: str) -> None:  # noqa: F811
    torch.manual_seed(0)
    segmenter = randomised_statistics(build_segmenter("pspnet", backbone="resnet18"))
    init = save_checkpoint(tmp_path / "init.pth", {"segmenter": segmenter}, arch="pspnet",
                           config={"model": {"backbone": "resnet18"}})
    settings = {"model.frozen_stages": 2, "optim.iterations": 2, "pretrain.iterations": 2}
    assert train_main([job, *cli_args(data, **settings), "--init", str(init), "--out", str(tmp_path / "run")]) == 0
    before, after = segmenter.state_dict(), load_checkpoint(tmp_path / "run" / "final.pth").models["segmenter"]
    for key, value in before.items():
        if key.startswith((*STEMS["resnet18"], "layer1.", "layer2.")):
            assert torch.equal(after[key], value), key
    changed = {key for key in before if key.startswith("layer3.") and not torch.equal(after[key], before[key])}
    assert "layer3.0.conv1.weight" in changed and "layer3.0.bn1.running_mean" in changed


def test_frozen_stages_are_0_to_4() -> None:
    assert load_config("synthetic-cpu", ["model.frozen_stages=4"])["model"]["frozen_stages"] == 4
    with pytest.raises(ConfigError, match="model.frozen_stages"):
        load_config("synthetic-cpu", ["model.frozen_stages=5"])


def test_resuming_with_other_frozen_stages_is_a_one_line_error(data: Path, tmp_path: Path,  # noqa: F811
                                                                capsys) -> None:
    """The optimiser holds the trainable parameters only: a run resumed with another ``model.frozen_stages`` has
    other ones, and loading its state stopped with an internal error (exit 70)."""
    out = str(tmp_path / "run")
    assert train_main(["pretrain", *cli_args(data, **{"pretrain.iterations": 2}), "--out", out]) == 0
    capsys.readouterr()
    settings = {"pretrain.iterations": 4, "model.frozen_stages": 2}
    assert train_main(["pretrain", *cli_args(data, **settings), "--out", out, "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optimiser state does not fit" in err[0] and "model.frozen_stages" in err[0], err
