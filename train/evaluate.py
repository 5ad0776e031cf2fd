"""Test-time inference of DANNet and mIoU evaluation on a labelled night set.

Inference follows the reference: relight ``R = I + r``, segment, re-weight the logits ``z`` with the
test-time class weights ``w`` (std 0.16), upsample bilinearly (``align_corners=True``) to the label
resolution, argmax. ``reweight="logits"`` scores ``w * z`` (reference code). ``reweight="probs"``
(paper: multiply the probabilities) scores ``z + log w``: per pixel its argmax is that of
``w * softmax(z)``, as log is increasing and softmax's normaliser is shared by all classes. Bilinear
interpolation is linear with weights summing to 1, so upsampling ``z + log w`` gives
``up(z) + log w``: the labels are ``argmax w * softmax(up(z))``, the probabilities of the upsampled
logits, which near class boundaries differ from upsampled probabilities.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from runtime.classes import REWEIGHTS, TEST_WEIGHTS_STD

from .checkpoint import Checkpoint, CheckpointError, check_against_flags, load_checkpoint, load_weights
from .metrics import ConfusionMeter
from .models import RelightNet, build_segmenter


def load_networks(checkpoint: str, light: str | None = None, arch: str | None = None,
                  backbone: str | None = None) -> tuple[nn.Module, nn.Module | None, str, str]:
    """Segmentation and relighting nets for inference, in eval mode: ``(segmenter, relight, arch, backbone)``.

    ``checkpoint`` is ours (architecture, backbone and relighting net inside) or a released
    segmentation file (architecture recognised from its keys; ResNet-101 unless ``backbone`` says
    otherwise); ``light`` adds a relighting net from another file (released ``*_light.pth``).
    ``arch``/``backbone`` that contradict the file are an error (``check_against_flags``).
    """
    return networks_of(load_checkpoint(checkpoint), light, arch, backbone)


def networks_of(ckpt: Checkpoint, light: str | None = None, arch: str | None = None,
                backbone: str | None = None) -> tuple[nn.Module, nn.Module | None, str, str]:
    """``load_networks`` of a checkpoint already read (whose config the caller wants too)."""
    check_against_flags(ckpt, arch, backbone)
    if light and "light" in ckpt.models:  # either choice would evaluate a network the user did not mean
        raise CheckpointError(f"{ckpt.path}: holds its own relighting network, but --light {light} was given; drop "
                              "--light (it is for released segmentation files, which hold none)")
    if "segmenter" not in ckpt.models:
        raise CheckpointError(f"{ckpt.path}: holds no segmentation network ({', '.join(ckpt.models)})")
    model_cfg = ckpt.config.get("model", {})
    arch = ckpt.arch or arch or "pspnet"
    setting = "--backbone" if backbone else "model.backbone"
    backbone = backbone or model_cfg.get("backbone", "resnet101")
    extra = {"aspp_branches": model_cfg.get("aspp_branches", 2)} if arch == "deeplab" else {}
    try:
        segmenter = build_segmenter(arch, backbone=backbone, **extra)
    except ValueError as error:  # a backbone no network has, or one this architecture does not take
        raise CheckpointError(f"{ckpt.path}: {setting} {backbone}: {error}") from None
    load_weights(segmenter, ckpt.models["segmenter"], ckpt.path)
    relight = None
    light_ckpt = load_checkpoint(light) if light else (ckpt if "light" in ckpt.models else None)
    if light_ckpt is not None:
        if "light" not in light_ckpt.models:
            raise CheckpointError(f"{light}: holds no relighting network")
        relight = RelightNet(channels=light_ckpt.models["light"]["model.1.weight"].shape[0])
        load_weights(relight, light_ckpt.models["light"], light_ckpt.path)
        relight.eval()
    return segmenter.eval(), relight, arch, backbone


def recorded_reweighting(ckpt: Checkpoint, weights_std: float | None = None,
                          reweight: str | None = None) -> tuple[float, str]:
    """``(weights std, reweight)`` to evaluate or deploy ``ckpt`` with: the given values, else what its run was
    configured with (``eval.*``, the values its validation used), else the reference's (released files), so that
    ``eval`` and ``dannet-export`` score and ship a model the way its run validated it."""
    recorded = ckpt.config.get("eval", {})
    weights_std = weights_std if weights_std is not None else recorded.get("weights_std", TEST_WEIGHTS_STD)
    reweight = reweight or recorded.get("reweight", REWEIGHTS[0])
    if reweight not in REWEIGHTS:  # a run that never validated kept whatever its config said
        raise CheckpointError(f"{ckpt.path}: records eval.reweight={reweight!r}, not one of "
                              f"{', '.join(REWEIGHTS)}; give --reweight")
    return float(weights_std), reweight


def weights_std_setting(given: float | None) -> str:
    """What an error about the std ``recorded_reweighting`` chose names: the flag, or the run's own setting."""
    return "--weights-std" if given is not None else "eval.weights_std (recorded by the checkpoint's run)"


def reweighted_scores(logits: torch.Tensor, weights: torch.Tensor, size: tuple[int, int], reweight: str = "logits",
                      align_corners: bool = True) -> torch.Tensor:
    """The scores the tail's argmax compares (N x C x H x W): ``w * z`` (``logits``) or ``z + log w``
    (``probs``), bilinearly upsampled to ``size`` (see the module docstring)."""
    w = weights.to(logits.device, logits.dtype).view(1, -1, 1, 1)
    if reweight == "logits":
        scores = logits * w
    elif reweight == "probs":
        scores = logits + torch.log(w)
    else:
        raise ValueError(f"eval.reweight must be one of {', '.join(REWEIGHTS)}, got {reweight!r}")
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=align_corners)


def reweight_upsample_argmax(logits: torch.Tensor, weights: torch.Tensor, size: tuple[int, int],
                             reweight: str = "logits", align_corners: bool = True) -> torch.Tensor:
    """Labels (N x H x W, int64) from low-resolution logits: the argmax of ``reweighted_scores``.
    The deployment tail in PyTorch."""
    return reweighted_scores(logits, weights, size, reweight, align_corners).argmax(dim=1)


@torch.no_grad()
def predict(segmenter: nn.Module, relight: nn.Module | None, image: torch.Tensor, size: tuple[int, int],
            weights: torch.Tensor, reweight: str = "logits") -> torch.Tensor:
    """Labels at ``size`` for a batch of ImageNet-normalised images."""
    x = relight(image) if relight is not None else image
    return reweight_upsample_argmax(segmenter(x).float(), weights, size, reweight)


@torch.no_grad()
def evaluate(segmenter: nn.Module, relight: nn.Module | None, dataset, weights: torch.Tensor,
             reweight: str = "logits", device: torch.device | str = "cpu", max_images: int | None = None,
             progress: bool = True) -> ConfusionMeter:
    """Confusion matrix of the predictions on a labelled dataset (items with ``image`` and ``label``)."""
    was_training = [m.training for m in (segmenter, relight) if m is not None]
    segmenter.eval()
    if relight is not None:
        relight.eval()
    meter = ConfusionMeter()
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    for i in tqdm(range(n), desc="eval", unit="img", disable=not progress, leave=False):
        item = dataset[i]
        if "label" not in item:
            raise ValueError(f"{item['name']}: evaluation needs labels; this dataset has none")
        label = item["label"].numpy()
        pred = predict(segmenter, relight, item["image"][None].to(device), label.shape, weights, reweight)
        meter.update(pred[0].cpu().numpy().astype(np.int64), label)
    for m, mode in zip((m for m in (segmenter, relight) if m is not None), was_training):
        m.train(mode)
    return meter
