"""One-stage DANNet adaptation (paper section 3, Fig. 2): one iteration of training, top to bottom.

Three images per iteration: a labelled source image I_s (Cityscapes) and an unlabelled, coarsely
aligned target pair: day I_td and night I_tn (Dark Zurich). A shared relighting net and a shared
segmentation net (together the generator) process all three; two discriminators tell source
predictions from target-day (D_d) and target-night (D_n) ones. The generator and the
discriminators are updated alternately.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from . import losses
from .engine import Env, Precision, distribute, place, stream, unwrap
from .evaluate import evaluate
from .factory import (build_networks, freeze_unused_aux_head, poly_lr, set_lr, sgd, source_dataset,
                      target_dataset, test_weights, train_weights, val_dataset)


def _requires_grad(modules, flag: bool) -> None:
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(flag)


class DANNetTask:
    def __init__(self, config: dict, env: Env, init: list[str], start: int) -> None:
        from .factory import initialise

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
            "generator": sgd(generator_params, config, o["lr"]),
            "discriminators": torch.optim.Adam(disc_params, lr=o["lr_d"], betas=tuple(o["betas_d"])),
        }
        self.precision = Precision(env, config["run"]["amp"])
        self.weights, self.test_weights = train_weights(config, env.device), test_weights(config, env.device)
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

    def _segment(self, relit: torch.Tensor, with_aux: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (and aux logits, when trained) upsampled to the crop, as the losses compare them with it."""
        def up(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else F.interpolate(x, size=relit.shape[-2:], mode="bilinear", align_corners=True)

        if with_aux and self.config["loss"]["aux"] > 0:
            main, aux = self.segmenter(relit, with_aux=True)
        else:
            main, aux = self.segmenter(relit), None
        return up(main), up(aux)

    def step(self, iteration: int) -> dict[str, float]:
        cfg, o = self.config["loss"], self.config["optim"]
        set_lr(self.optimizers["generator"], poly_lr(o["lr"], iteration, o["iterations"], o["power"]))
        set_lr(self.optimizers["discriminators"], poly_lr(o["lr_d"], iteration, o["iterations"], o["power"]))
        source, target = next(self.source), next(self.target)
        image_s, label_s = self._to_device(source["image"]), self._to_device(source["label"])
        day, night = self._to_device(target["day"]), self._to_device(target["night"])
        disc_day, disc_night = unwrap(self.disc_day), unwrap(self.disc_night)

        # 1. generator step: relight, segment, and score all three images; D fixed
        _requires_grad([self.disc_day, self.disc_night], False)
        with self.precision.autocast():
            relight = self.light if self.light is not None else (lambda x: x)
            relit_s, relit_d, relit_n = relight(image_s), relight(day), relight(night)
            pred_s, aux_s = self._segment(relit_s, with_aux=True)
            pred_d, _ = self._segment(relit_d)
            pred_n, _ = self._segment(relit_n)
            pred_s, pred_d, pred_n = pred_s.float(), pred_d.float(), pred_n.float()

            # light loss (TV, exposure, SSIM) on every relit image; E from the night batch
            loss_light_s = loss_light_t = image_s.new_zeros(())
            if self.light is not None:
                exposure = losses.exposure_target(night, cfg["exposure_target"])
                light_loss = lambda relit, image: losses.light_loss(  # noqa: E731
                    relit.float(), image, exposure, cfg["exposure_target"], cfg["tv"], cfg["exposure"], cfg["ssim"],
                    cfg["exposure_patch"])
                loss_light_s = light_loss(relit_s, image_s)
                loss_light_t = light_loss(relit_d, day) + light_loss(relit_n, night)

            # segmentation loss on the labelled source image (class-weighted cross entropy)
            loss_seg = losses.segmentation_loss(pred_s, label_s, self.weights)
            if aux_s is not None:
                loss_seg = loss_seg + cfg["aux"] * losses.segmentation_loss(aux_s.float(), label_s, self.weights)

            # static loss: the day prediction's static classes supervise the night prediction (eq. 8-9)
            pseudo = losses.pseudo_label(pred_d, pred_n, self.weights, cfg["pseudo_label"])
            loss_static = losses.static_loss(pred_n, pseudo, self.weights if cfg["static_class_weights"] else None,
                                             cfg["focal_gamma"], cfg["static_probs"])

            # adversarial loss: target predictions should look like source predictions to D_d and D_n
            loss_adv = losses.generator_adversarial_loss(disc_day(F.softmax(pred_d, dim=1)),
                                                         disc_night(F.softmax(pred_n, dim=1)), cfg["source_label"])

            loss_g = (cfg["light_source"] * loss_light_s + cfg["light"] * loss_light_t + cfg["seg"] * loss_seg
                      + cfg["static"] * loss_static + cfg["adv"] * loss_adv)
        self.precision.step(loss_g, self.optimizers["generator"])

        # 2. discriminator step: source vs target day (D_d), source vs target night (D_n)
        _requires_grad([self.disc_day, self.disc_night], True)
        with self.precision.autocast():
            p_s, p_d, p_n = (F.softmax(p.detach(), dim=1) for p in (pred_s, pred_d, pred_n))
            src, tgt = cfg["source_label"], cfg["target_label"]
            loss_d = (losses.discriminator_loss(self.disc_day(p_s), self.disc_day(p_d), src, tgt)
                      + losses.discriminator_loss(self.disc_night(p_s), self.disc_night(p_n), src, tgt))
        self.precision.step(loss_d, self.optimizers["discriminators"])
        self.precision.scaler.update()

        values = {"loss_total": loss_g, "loss_seg": loss_seg, "loss_static": loss_static, "loss_adv": loss_adv,
                  "loss_light_source": loss_light_s, "loss_light_target": loss_light_t, "loss_d": loss_d}
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
