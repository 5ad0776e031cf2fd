"""One-stage DANNet adaptation (paper section 3, Fig. 2): one iteration of training, top to bottom.

Three images per iteration: a labelled source image I_s (Cityscapes) and an unlabelled, coarsely
aligned target pair: day I_td and night I_tn (Dark Zurich). A shared relighting net and a shared
segmentation net (together the generator) process all three; two discriminators tell source
predictions from target-day (D_d) and target-night (D_n) ones. The generator and the
discriminators are updated alternately.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F

from . import losses
from .config import ConfigError
from .engine import Env, Precision, distribute, place, stream, unwrap
from .evaluate import evaluate
from .factory import (build_networks, freeze_unused_aux_head, generator_optimizer, poly_lr, set_lr,
                      source_dataset, target_dataset, test_weights, train_weights, val_dataset)
from .models.relight import SIDE_MULTIPLE


def _requires_grad(modules, flag: bool) -> None:
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(flag)


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    """Autocast's bf16/fp16 outputs as fp32 for the losses; fp32 (or fp64) stays as it is."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


#: values of ``loss.target_resolution``: the reference code's first
TARGET_RESOLUTIONS = ("crop", "input")


def target_compare_size(config: dict) -> tuple[int, int]:
    """Where the target predictions are compared (pseudo label, static loss, D_d, D_n):
    ``loss.target_resolution: crop`` upsamples them to the target crop (the reference code: 960,
    although the network saw the crop resized to 512), ``input`` to the network input."""
    t, mode = config["data"]["target"], config["loss"]["target_resolution"]
    if mode == "crop":
        return t["crop"], t["crop"]
    if mode == "input":
        size = t["resize_to"] or t["crop"]
        return size, size
    raise ValueError(f"loss.target_resolution must be one of {', '.join(TARGET_RESOLUTIONS)}, got {mode!r}")


def check_network_inputs(config: dict) -> None:
    """Refuse, before anything is built, network inputs that would stop the first step: the relighting net gives
    the input's size back only for sides that are multiples of ``SIDE_MULTIPLE``, and the exposure loss averages
    squares of ``loss.exposure_patch`` pixels of what it returns. Checked here rather than with the config's
    ranges: pre-training has no relighting net and takes any crop."""
    if not config["model"]["relight"]:
        return
    patch, source, target = config["loss"]["exposure_patch"], config["data"]["source"], config["data"]["target"]
    target_input = "crop" if target["resize_to"] is None else "resize_to"  # the target crop, resized or not
    for key, sides in (("data.source.crop", source["crop"]), (f"data.target.{target_input}", [target[target_input]])):
        if any(side % SIDE_MULTIPLE or side < patch for side in sides):
            shown = sides[0] if len(sides) == 1 else sides
            raise ConfigError(f"{key}={shown}: the relighting net needs sides that are multiples of {SIDE_MULTIPLE} "
                              f"and at least loss.exposure_patch={patch} (a network input of the adaptation)")


class DANNetTask:
    def __init__(self, config: dict, env: Env, init: list[str], start: int) -> None:
        from .factory import initialise

        check_network_inputs(config)
        if config["data"]["source"]["dataset"] != "cityscapes":  # night labels as the "day" source: no adaptation
            raise ConfigError(f"data.source.dataset={config['data']['source']['dataset']} is for pretrain (a "
                              "supervised bound); adapt's labelled source is day images: data.source.dataset=cityscapes")
        self.config, self.env = config, env
        self.arch = config["model"]["arch"]
        cl = config["run"]["channels_last"]
        nets = build_networks(config, with_light=config["model"]["relight"])
        self.loaded = initialise(nets, init, self.arch)
        freeze_unused_aux_head(nets["segmenter"], config["loss"]["aux"])
        self.models = {role: distribute(place(net, env, cl), env) for role, net in nets.items()}
        self.segmenter, self.light = self.models["segmenter"], self.models.get("light")
        self.disc_day, self.disc_night = self.models["disc_day"], self.models["disc_night"]
        o = config["optim"]
        generator_params = [*self.segmenter.parameters(), *(self.light.parameters() if self.light is not None else [])]
        disc_params = [*self.disc_day.parameters(), *self.disc_night.parameters()]
        self.optimizers = {
            "generator": generator_optimizer(generator_params, config, o["lr"]),
            "discriminators": torch.optim.Adam(disc_params, lr=o["lr_d"], betas=tuple(o["betas_d"])),
        }
        self.precision = Precision(env, config["run"]["amp"])
        self.weights, self.test_weights = train_weights(config, env.device), test_weights(config, env.device)
        self.target_size = target_compare_size(config)
        seed, workers, batch = config["run"]["seed"], config["data"]["workers"], o["batch_size"]
        self.source = stream(source_dataset(config), batch, seed, start, env, workers)
        self.target = stream(target_dataset(config), batch, seed + 1, start, env, workers)
        v = config["data"]["val"]
        validating = env.is_main and config["run"]["val_every"] > 0
        self.val = val_dataset(v["dataset"], v["root"], config) if validating else None

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.env.device, non_blocking=True)
        if self.config["run"]["channels_last"] and self.env.device.type == "cuda" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _segment(self, relit: torch.Tensor, size: tuple[int, int],
                 with_aux: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (and aux logits, when trained) bilinearly upsampled to ``size``, where the losses
        and the discriminators compare them."""
        def up(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else _full_precision(F.interpolate(x, size=size, mode="bilinear",
                                                                        align_corners=True))

        if with_aux and self.config["loss"]["aux"] > 0:
            main, aux = self.segmenter(relit, with_aux=True)
        else:
            main, aux = self.segmenter(relit), None
        return up(main), up(aux)

    def _relight(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(R, r)``: the relit image and the residual, or ``(I, None)`` without a relighting net."""
        return self.light(image, with_residual=True) if self.light is not None else (image, None)

    def _light_loss(self, relit: torch.Tensor, image: torch.Tensor, residual: torch.Tensor | None,
                    exposure: torch.Tensor) -> torch.Tensor:
        """L_light of one relit image (TV, SSIM, exposure against E of the night batch); 0 without
        a relighting net."""
        if residual is None:
            return image.new_zeros(())
        c = self.config["loss"]
        return losses.light_loss(_full_precision(relit), image, _full_precision(residual), exposure,
                                 c["exposure_target"], c["exposure_norm"], c["tv"], c["exposure"], c["ssim"],
                                 c["exposure_patch"], c["tv_norm"])

    @contextlib.contextmanager
    def _local_gradients(self) -> Iterator[None]:
        """Backward passes inside accumulate the generator's gradients on this process only; the
        next one outside averages the sum across processes (DDP), once per step."""
        with contextlib.ExitStack() as stack:
            if self.env.distributed:
                for net in (self.segmenter, self.light):
                    if net is not None:
                        stack.enter_context(net.no_sync())
            yield

    def step(self, iteration: int, done: float | None = None) -> dict[str, float]:
        """One iteration. The generator's loss is back-propagated image by image (day, night,
        source) as the reference does: only one image's graph is alive at a time, and its gradients
        accumulate in the reference's order. BatchNorm's running statistics and dropout's random
        stream depend on that order too."""
        cfg, o = self.config["loss"], self.config["optim"]
        done = iteration / o["iterations"] if done is None else done
        set_lr(self.optimizers["generator"], poly_lr(o["lr"], done, o["power"]))
        set_lr(self.optimizers["discriminators"], poly_lr(o["lr_d"], done, o["power"]))
        source, target = next(self.source), next(self.target)
        image_s, label_s = self._to_device(source["image"]), self._to_device(source["label"])
        day, night = self._to_device(target["day"]), self._to_device(target["night"])
        disc_day, disc_night = unwrap(self.disc_day), unwrap(self.disc_night)
        exposure = losses.exposure_target(night, cfg["exposure_target"])
        src, tgt = cfg["source_label"], cfg["target_label"]

        # 1. generator step, D fixed: every image is relit, segmented and scored
        _requires_grad([self.disc_day, self.disc_night], False)
        self.optimizers["generator"].zero_grad(set_to_none=True)

        # target day: light loss, adversarial loss against D_d
        with self._local_gradients(), self.precision.autocast():
            relit_d, r_d = self._relight(day)
            loss_light_d = self._light_loss(relit_d, day, r_d, exposure)
            pred_d, _ = self._segment(relit_d, self.target_size)
            loss_adv_d = losses.least_squares(disc_day(F.softmax(pred_d, dim=1)), src)
            loss_day = cfg["adv"] * loss_adv_d + cfg["light"] * loss_light_d
            self.precision.backward(loss_day)
        pred_d = pred_d.detach()

        # target night: light loss, adversarial loss against D_n, static loss on the pair's
        # static classes (eq. 8-9)
        with self._local_gradients(), self.precision.autocast():
            relit_n, r_n = self._relight(night)
            loss_light_n = self._light_loss(relit_n, night, r_n, exposure)
            pred_n, _ = self._segment(relit_n, self.target_size)
            pseudo = losses.pseudo_label(pred_d, pred_n, self.weights, cfg["pseudo_label"])
            loss_adv_n = losses.least_squares(disc_night(F.softmax(pred_n, dim=1)), src)
            loss_static = losses.static_loss(pred_n, pseudo, self.weights if cfg["static_class_weights"] else None,
                                             cfg["focal_gamma"], cfg["static_probs"], cfg["static_neighbourhood"])
            loss_night = cfg["adv"] * loss_adv_n + cfg["static"] * loss_static + cfg["light"] * loss_light_n
            self.precision.backward(loss_night)
        pred_n = pred_n.detach()

        # source: light loss, class-weighted cross entropy against the labels
        with self.precision.autocast():
            relit_s, r_s = self._relight(image_s)
            loss_light_s = self._light_loss(relit_s, image_s, r_s, exposure)
            pred_s, aux_s = self._segment(relit_s, tuple(image_s.shape[-2:]), with_aux=True)
            loss_seg = losses.segmentation_loss(pred_s, label_s, self.weights, cfg["seg_norm"])
            if aux_s is not None:
                loss_seg = loss_seg + cfg["aux"] * losses.segmentation_loss(aux_s, label_s, self.weights,
                                                                            cfg["seg_norm"])
            loss_source = cfg["seg"] * loss_seg + cfg["light_source"] * loss_light_s
            self.precision.backward(loss_source)
        pred_s = pred_s.detach()
        self.precision.step(self.optimizers["generator"])

        # 2. discriminator step: source vs target day (D_d), source vs target night (D_n)
        _requires_grad([self.disc_day, self.disc_night], True)
        self.optimizers["discriminators"].zero_grad(set_to_none=True)
        with self.precision.autocast():
            p_s, p_d, p_n = (F.softmax(p, dim=1) for p in (pred_s, pred_d, pred_n))
            loss_d = (losses.discriminator_loss(self.disc_day(p_s), self.disc_day(p_d), src, tgt)
                      + losses.discriminator_loss(self.disc_night(p_s), self.disc_night(p_n), src, tgt))
            self.precision.backward(loss_d)
        self.precision.step(self.optimizers["discriminators"])
        self.precision.scaler.update()

        values = {"loss_total": loss_day + loss_night + loss_source, "loss_seg": loss_seg,
                  "loss_static": loss_static, "loss_adv": loss_adv_d + loss_adv_n,
                  "loss_light_source": loss_light_s, "loss_light_target": loss_light_d + loss_light_n,
                  "loss_d": loss_d}
        values = {k: float(v.detach()) for k, v in values.items()}
        values["lr"] = self.optimizers["generator"].param_groups[0]["lr"]
        return values

    def validate(self) -> float | None:
        if self.val is None:
            return None
        v, e = self.config["data"]["val"], self.config["eval"]
        light = unwrap(self.light) if self.light is not None else None
        meter = evaluate(unwrap(self.segmenter), light, self.val, self.test_weights, e["reweight"],
                         self.env.device, v["max_images"], progress=False)
        return meter.miou
