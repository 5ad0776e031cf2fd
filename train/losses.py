"""DANNet's losses (paper section 3.4), each a plain function of tensors.

Names of the paper: ``I`` input image, ``R = I + r`` relit image, ``P`` segmentation prediction
(logits, upsampled to the crop), ``F_td`` pseudo label from the target-day prediction, ``w`` class
weights (eq. 1-2). Where the paper and the reference code differ, the function takes the choice as
an argument named like its config option (see ``train/configs/reference.yaml``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from runtime.classes import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, STATIC_CLASSES

NUM_STATIC = len(STATIC_CLASSES)


# --- light loss: L_light = 10 L_tv + L_exp + L_ssim ---------------------------------------------

def tv_loss(r: torch.Tensor) -> torch.Tensor:
    """Total variation of the residual r: mean squared differences of vertical and horizontal
    neighbours, ``2 * (sum dy^2 / count_y + sum dx^2 / count_x) / batch``."""
    n, _, h, w = r.shape
    dy = (r[:, :, 1:, :] - r[:, :, :-1, :]).pow(2).sum() / ((h - 1) * w)
    dx = (r[:, :, :, 1:] - r[:, :, :, :-1]).pow(2).sum() / (h * (w - 1))
    return 2 * (dy + dx) / n


def exposure_loss(relit: torch.Tensor, target: torch.Tensor | float, patch: int = 32) -> torch.Tensor:
    """Mean squared distance of each ``patch`` x ``patch`` average of the channel mean to ``target``."""
    return (F.avg_pool2d(relit.mean(dim=1, keepdim=True), patch) - target).pow(2).mean()


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Simplified SSIM with a 3x3 block filter over reflection-padded images; loss
    ``clamp((1 - SSIM) / 2, 0, 1)`` averaged over pixels."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x * mu_x
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y * mu_y
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sigma_x + sigma_y + c2))
    return torch.clamp((1 - ssim) / 2, 0, 1).mean()


def to_intensity(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised images back to [0, 1] intensities."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x * std + mean


def exposure_target(night: torch.Tensor, mode: str) -> torch.Tensor:
    """E of the exposure loss from the current night batch.

    ``normalized`` (reference code): the mean of the ImageNet-normalised batch, compared with the
    normalised relit image. ``intensity`` (paper): the mean night intensity in [0, 1], compared with
    the relit image converted back to intensities (see ``light_loss``).
    """
    if mode == "normalized":
        return night.mean()
    if mode == "intensity":
        return to_intensity(night).mean()
    raise ValueError(f"loss.exposure_target must be 'normalized' or 'intensity', got {mode!r}")


def light_loss(relit: torch.Tensor, image: torch.Tensor, target: torch.Tensor, exposure_mode: str = "normalized",
               tv_weight: float = 10.0, exp_weight: float = 1.0, ssim_weight: float = 1.0,
               patch: int = 32) -> torch.Tensor:
    """``L_light = 10 L_tv(R - I) + L_exp(R, E) + L_ssim(R, I)``."""
    exposed = relit if exposure_mode == "normalized" else to_intensity(relit)
    return (tv_weight * tv_loss(relit - image) + exp_weight * exposure_loss(exposed, target, patch)
            + ssim_weight * ssim_loss(relit, image))


# --- segmentation loss ---------------------------------------------------------------------------

def segmentation_loss(logits: torch.Tensor, label: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Class-weighted cross entropy (weights w with std 0.05), ignoring 255."""
    return F.cross_entropy(logits, label, weight=weights, ignore_index=IGNORE_INDEX)


# --- static loss (eq. 8-9) -------------------------------------------------------------------------

def pseudo_label(day_logits: torch.Tensor, night_logits: torch.Tensor, weights: torch.Tensor,
                 mode: str = "reference_blend") -> torch.Tensor:
    """F_td: the static-class pseudo label from the target-day prediction (dynamic classes -> 255).

    ``paper``: argmax of the re-weighted day probabilities ``w * softmax(P_td)``.
    ``reference_blend`` (the released code): on the static channels, the day and night logits are
    blended 0.8/0.2 where the day logit exceeds 0.4 and 0.2/0.8 elsewhere (dynamic channels keep
    the day logits), then multiplied by w before the argmax.
    """
    day_logits, night_logits = day_logits.detach(), night_logits.detach()
    w = weights.view(1, -1, 1, 1)
    if mode == "paper":
        score = torch.softmax(day_logits, dim=1) * w
    elif mode == "reference_blend":
        day_static, night_static = day_logits[:, :NUM_STATIC], night_logits[:, :NUM_STATIC]
        alpha = torch.where(day_static > 0.4, 0.8, 0.2)
        blended = alpha * day_static + (1 - alpha) * night_static
        score = torch.cat([blended, day_logits[:, NUM_STATIC:]], dim=1) * w
    else:
        raise ValueError(f"loss.pseudo_label must be 'reference_blend' or 'paper', got {mode!r}")
    label = score.argmax(dim=1)
    label[label >= NUM_STATIC] = IGNORE_INDEX
    return label


def static_probabilities(night_logits: torch.Tensor, mode: str = "static_softmax") -> torch.Tensor:
    """P_tn on the static classes: ``static_softmax`` (reference code) normalises over the 11 static
    logits only; ``full_softmax`` (paper) takes the static channels of the 19-class softmax."""
    if mode == "static_softmax":
        return torch.softmax(night_logits[:, :NUM_STATIC], dim=1)
    if mode == "full_softmax":
        return torch.softmax(night_logits, dim=1)[:, :NUM_STATIC]
    raise ValueError(f"loss.static_probs must be 'static_softmax' or 'full_softmax', got {mode!r}")


def static_loss(night_logits: torch.Tensor, pseudo: torch.Tensor, weights: torch.Tensor | None = None,
                gamma: float = 1.0, probs_mode: str = "static_softmax", eps: float = 1e-7) -> torch.Tensor:
    """Focal loss on the static classes with the 3x3 neighbourhood of eq. 9.

    At pixel i the probability of the pseudo class is ``p_i = max_{j in 3x3(i)} P_tn(F_td(j), i)``: a
    neighbour's pseudo label counts, which tolerates the coarse misalignment of day/night pairs.
    Pixels whose own pseudo label is ignored (dynamic or 255) do not contribute; ``weights`` (the
    reference code's choice) multiplies the static probabilities by w before the max and the log.
    Loss: mean over supervised pixels of ``-(1 - p)^gamma log p``.
    """
    probs = static_probabilities(night_logits, probs_mode)
    if weights is not None:
        probs = probs * weights[:NUM_STATIC].view(1, -1, 1, 1)
    valid = pseudo != IGNORE_INDEX
    onehot = F.one_hot(torch.where(valid, pseudo, NUM_STATIC), NUM_STATIC + 1)[..., :NUM_STATIC]
    onehot = F.pad(onehot.permute(0, 3, 1, 2).to(probs.dtype), (1, 1, 1, 1))  # neighbours outside count as none
    h, w = pseudo.shape[-2:]
    p = torch.stack([(onehot[:, :, dy:dy + h, dx:dx + w] * probs).sum(dim=1)
                     for dy in range(3) for dx in range(3)]).amax(dim=0)
    p = p[valid].clamp_min(eps)
    if p.numel() == 0:
        return night_logits.sum() * 0.0
    return (-(1 - p).pow(gamma) * p.log()).mean()


# --- adversarial losses (least squares) -----------------------------------------------------------

def generator_adversarial_loss(d_day: torch.Tensor, d_night: torch.Tensor, source_label: float) -> torch.Tensor:
    """``(D_d(P_td) - r)^2 + (D_n(P_tn) - r)^2``: make target predictions look like source ones."""
    return (d_day - source_label).pow(2).mean() + (d_night - source_label).pow(2).mean()


def discriminator_loss(d_source: torch.Tensor, d_target: torch.Tensor, source_label: float,
                       target_label: float) -> torch.Tensor:
    """``0.5 (D(P_s) - r)^2 + 0.5 (D(P_t) - f)^2``."""
    return 0.5 * (d_source - source_label).pow(2).mean() + 0.5 * (d_target - target_label).pow(2).mean()
