"""Builders shared by the training jobs: networks (with ``--init`` weights), datasets, optimisers."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from runtime.classes import CLASS_NAMES, NUM_CLASSES, class_weights

from .checkpoint import CheckpointError, load_checkpoint, load_weights
from .config import ConfigError
from .data import (DarkZurichPairs, EvalTransform, PairTransform, SegmentationDataset, TrainTransform, build_dataset,
                   dataset_samples, pairs_csv_path)
from .imagenet import initialise_from_imagenet, is_imagenet_init
from .models import Discriminator, RelightNet, build_segmenter

#: roles of our checkpoints; released files provide ``segmenter`` or ``light``
ROLES = ("segmenter", "light", "disc_day", "disc_night")


def build_networks(config: dict, with_light: bool = True, with_discriminators: bool = True) -> dict[str, nn.Module]:
    m = config["model"]
    extra = {"aspp_branches": m["aspp_branches"]} if m["arch"] == "deeplab" else {}
    nets: dict[str, nn.Module] = {"segmenter": build_segmenter(m["arch"], NUM_CLASSES, m["backbone"], **extra)}
    nets["segmenter"].freeze_stages(m["frozen_stages"])
    if with_light:
        nets["light"] = RelightNet(channels=m["light_channels"])
    if with_discriminators:
        nets["disc_day"], nets["disc_night"] = Discriminator(NUM_CLASSES), Discriminator(NUM_CLASSES)
    return nets


def initialise(nets: dict[str, nn.Module], paths: list[str], arch: str) -> list[str]:
    """Load ``--init`` files (ours or released) into the matching networks; returns what was loaded.
    ``imagenet:PATH`` (or ``imagenet``) fills the segmenter's trunk with ImageNet weights (train/imagenet.py).

    A file for another architecture, or with no network this job uses, is an error naming the file.
    """
    loaded = []
    for path in paths:
        if is_imagenet_init(path):
            loaded.append(f"segmenter trunk <- {initialise_from_imagenet(nets['segmenter'], path)}")
            continue
        ckpt = load_checkpoint(path)
        if ckpt.arch is not None and ckpt.arch != arch:
            raise CheckpointError(f"{path}: weights for {ckpt.arch}, but model.arch is {arch}")
        used = [role for role in ckpt.models if role in nets]
        if not used:
            raise CheckpointError(f"{path}: holds {', '.join(ckpt.models)}, none of which this job trains "
                                  f"({', '.join(nets)})")
        for role in used:
            load_weights(nets[role], ckpt.models[role], path)
            loaded.append(f"{role} <- {path}")
    return loaded


def class_proportions(config: dict) -> np.ndarray | None:
    """The ``a_k`` a run's class weights come from (paper eq. 1): None for the paper's Cityscapes table, which is
    also what a released file (no config) was trained with; a run's measured proportions otherwise."""
    value = config.get("data", {}).get("source", {}).get("class_proportions", "cityscapes")
    if value == "cityscapes":
        return None
    if value == "measured":
        raise ValueError("data.source.class_proportions=measured must be resolved (resolve_class_proportions) first")
    return np.asarray(value, dtype=np.float64)


def resolve_class_proportions(config: dict, recorded: dict | None = None, say: Callable[[str], None] = print,
                              progress: bool = True) -> dict:
    """``config`` with ``measured`` proportions replaced by numbers: those ``recorded`` in the config of the run
    being resumed, else those counted on the source's labels. The run's config.yaml and checkpoints then hold them,
    so that a resumed run (even one whose labels have changed since), ``eval`` and ``dannet-export`` weigh the
    classes as the run did."""
    from .data.proportions import class_pixel_counts, proportions_of

    source = config["data"]["source"]
    if source["class_proportions"] != "measured":
        return config
    earlier = (recorded or {}).get("data", {}).get("source", {}).get("class_proportions")
    if isinstance(earlier, list):
        say("class proportions: those the run measured when it started")
        shares = earlier
    else:
        samples = dataset_samples(source["dataset"], source["root"], source["split"])
        counted, absent = proportions_of(class_pixel_counts(samples, progress))
        say(f"class proportions measured on {source['root']} ({source['split']})"
            + (f"; absent, given the rarest share: {', '.join(absent)}" if absent else ""))
        shares = counted.tolist()
    return {**config, "data": {**config["data"], "source": {**source, "class_proportions": shares}}}


def weights_std_limit(config: dict) -> tuple[float, str]:
    """The std from which a run's proportions give their most frequent class a weight <= 0, and that class.

    Such a weight turns re-weighting upside down for its class (and has no log, which the ``probs`` mode takes).
    ``MAX_WEIGHTS_STD`` keeps the Cityscapes table clear of it, but a run's own proportions (one class far more
    frequent than the rest) can reach it at a smaller std; equally frequent classes never do (inf)."""
    per_std = class_weights(1.0, avg=0.0, proportions=class_proportions(config))  # each weight's offset per unit std
    lowest = int(per_std.argmin())
    return (float(-1 / per_std[lowest]) if per_std[lowest] < 0 else math.inf), CLASS_NAMES[lowest]


def class_weights_of(config: dict, std: float, setting: str = "--weights-std") -> np.ndarray:
    """The class weights of std ``std`` from the proportions a run (``config``; {} for a released file) used; a
    std at or above ``weights_std_limit`` is refused, naming ``setting``."""
    limit, most_frequent = weights_std_limit(config)
    if std >= limit:
        raise ConfigError(f"{setting} {std}: the class proportions of this run give {most_frequent} a weight <= 0 "
                          f"from std {limit:.3f} on, which turns re-weighting upside down for it; give a smaller std")
    return class_weights(std, proportions=class_proportions(config))


def train_weights(config: dict, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(class_weights_of(config, config["loss"]["weights_std"], "loss.weights_std")).to(device)


def test_weights(config: dict, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(class_weights_of(config, config["eval"]["weights_std"], "eval.weights_std")).to(device)


#: labelled training sets (``data.source.dataset``): DANNet's day source, and night labels for the supervised bound
SOURCE_DATASETS = ("cityscapes", "acdc-night")


def source_dataset(config: dict) -> SegmentationDataset:
    """The labelled training images: Cityscapes (day) as DANNet's source; ACDC night labels train a model that
    shows how far night mIoU can go in the same budget with labels, which no adaptation method has."""
    s = config["data"]["source"]
    if s["dataset"] not in SOURCE_DATASETS:
        raise ConfigError(f"data.source.dataset must be one of {', '.join(SOURCE_DATASETS)}, got {s['dataset']!r}")
    transform = TrainTransform(crop=tuple(s["crop"]), scale=tuple(s["scale"]), flip=config["data"]["flip"])
    return SegmentationDataset(dataset_samples(s["dataset"], s["root"], s["split"]), transform)


def target_dataset(config: dict) -> DarkZurichPairs:
    t = config["data"]["target"]
    root = Path(t["root"]).expanduser()  # as dataset_samples: no shell expanded a config's ~
    transform = PairTransform(crop=t["crop"], scale=tuple(t["scale"]), resize_to=t["resize_to"],
                              flip=config["data"]["flip"])
    return DarkZurichPairs(root, pairs_csv_path(root, t["pairs"]), transform)


def val_dataset(name: str | None, root: str, config: dict):
    if not name:
        return None
    return build_dataset(name, root, transform=EvalTransform(scale=config["data"]["val"]["scale"]))


#: values of ``optim.optimizer``, for the segmentation and relighting nets
OPTIMIZERS = ("sgd", "adamw")


def generator_optimizer(params, config: dict, lr: float) -> torch.optim.Optimizer:
    """The segmentation (and relighting) nets' optimiser: SGD with momentum as the released code, or
    AdamW (``optim.optimizer``), which takes short CPU budgets from ImageNet weights much further."""
    o, params = config["optim"], [p for p in params if p.requires_grad]
    if o["optimizer"] not in OPTIMIZERS:
        raise ConfigError(f"optim.optimizer must be one of {', '.join(OPTIMIZERS)}, got {o['optimizer']!r}")
    if o["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=o["weight_decay"])
    return torch.optim.SGD(params, lr=lr, momentum=o["momentum"], weight_decay=o["weight_decay"])


def poly_lr(base: float, done: float, power: float) -> float:
    """``base * (1 - done) ^ power``, ``done`` the fraction of the schedule behind us (iteration /
    iterations, as the reference; or of ``run.time_limit_min``)."""
    return base * (1 - done) ** power


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def freeze_unused_aux_head(segmenter: nn.Module, aux_weight: float) -> None:
    """The aux head gets no gradient when its loss weight is 0: freeze it (DDP needs every trainable
    parameter to receive a gradient, and SGD would skip it anyway)."""
    name = getattr(segmenter, "aux_head", None)
    if name is not None and aux_weight == 0:
        for p in getattr(segmenter, name).parameters():
            p.requires_grad_(False)
