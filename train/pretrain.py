"""Source-only pre-training on Cityscapes: the segmentation net DANNet's adaptation starts from.

Class-weighted cross entropy (std 0.05) on random scale/crop/flip crops, plus the auxiliary head's
loss (``pretrain.aux``), SGD with poly learning-rate decay. The loss is PyTorch's weighted mean whatever
``loss.seg_norm`` says: that option is the paper's eq. 7 of the adaptation; the paper does not describe
pre-training, and eq. 7's ``1 / (N |C|)`` would lower the learning rate about 19 times.
"""
from __future__ import annotations

import torch.nn.functional as F

from . import losses
from .engine import Env, Precision, distribute, place, stream, unwrap
from .evaluate import evaluate
from .factory import (build_networks, freeze_unused_aux_head, generator_optimizer, initialise, poly_lr, set_lr,
                      source_dataset, test_weights, train_weights, val_dataset)


class PretrainTask:
    def __init__(self, config: dict, env: Env, init: list[str], start: int) -> None:
        self.config, self.env = config, env
        self.arch = config["model"]["arch"]
        nets = build_networks(config, with_light=False, with_discriminators=False)
        self.loaded = initialise(nets, init, self.arch)
        self.aux = config["pretrain"]["aux"]
        freeze_unused_aux_head(nets["segmenter"], self.aux)
        self.segmenter = distribute(place(nets["segmenter"], env, config["run"]["channels_last"]), env)
        self.models = {"segmenter": self.segmenter}
        self.optimizers = {"segmenter": generator_optimizer(self.segmenter.parameters(), config, config["pretrain"]["lr"])}
        self.precision = Precision(env, config["run"]["amp"])
        self.weights, self.test_weights = train_weights(config, env.device), test_weights(config, env.device)
        self.source = stream(source_dataset(config), config["optim"]["batch_size"], config["run"]["seed"], start,
                             env, config["data"]["workers"])
        p = config["pretrain"]
        validating = env.is_main and config["run"]["val_every"] > 0
        self.val = val_dataset(p["val_dataset"], p["val_root"], config) if validating else None

    def step(self, iteration: int, done: float | None = None) -> dict[str, float]:
        p = self.config["pretrain"]
        done = iteration / p["iterations"] if done is None else done
        set_lr(self.optimizers["segmenter"], poly_lr(p["lr"], done, self.config["optim"]["power"]))
        batch = next(self.source)
        image, label = batch["image"].to(self.env.device), batch["label"].to(self.env.device)
        with self.precision.autocast():
            if self.aux > 0:
                main, aux = self.segmenter(image, with_aux=True)
            else:
                main, aux = self.segmenter(image), None
            up = lambda x: F.interpolate(x.float(), size=image.shape[-2:], mode="bilinear", align_corners=True)
            loss = losses.segmentation_loss(up(main), label, self.weights)
            if aux is not None:
                loss = loss + self.aux * losses.segmentation_loss(up(aux), label, self.weights)
        self.optimizers["segmenter"].zero_grad(set_to_none=True)
        self.precision.backward(loss)
        self.precision.step(self.optimizers["segmenter"])
        self.precision.scaler.update()
        return {"loss_seg": float(loss.detach()), "lr": self.optimizers["segmenter"].param_groups[0]["lr"]}

    def validate(self) -> float | None:
        if self.val is None:
            return None
        meter = evaluate(unwrap(self.segmenter), None, self.val, self.test_weights, self.config["eval"]["reweight"],
                         self.env.device, self.config["data"]["val"]["max_images"], progress=False)
        return meter.miou
