"""DANNet's losses (paper section 3.4), each a plain function of tensors.

Names of the paper: ``I`` input image, ``r`` the relighting residual, ``R = I + r`` relit image,
``P`` segmentation prediction (logits, bilinearly upsampled to the size the losses compare them at:
the source crop, and for the target images ``loss.target_resolution``), ``F_td`` pseudo label from
the target-day prediction, ``w`` class weights (eq. 1-2). Where the paper and the reference code
differ, the function takes the choice as an argument named like its config option (see
``train/configs/reference.yaml``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from runtime.classes import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, STATIC_CLASSES

NUM_STATIC = len(STATIC_CLASSES)

#: the values of each ``loss.*`` option that picks between the reference code and the paper (reference first);
#: train/config.py refuses any other name when it loads a config
TV_NORMS = ("reference", "paper")
EXPOSURE_NORMS = ("l2", "l1")
EXPOSURE_TARGETS = ("normalized", "intensity")
SEG_NORMS = ("reference", "paper")
PSEUDO_LABELS = ("reference_blend", "paper")
STATIC_PROBS = ("static_softmax", "full_softmax")
STATIC_NEIGHBOURHOODS = ("reference_aliased", "3x3")


def _unknown(option: str, value: str, allowed: tuple[str, ...]) -> ValueError:
    return ValueError(f"{option} must be one of {', '.join(allowed)}, got {value!r}")


# --- light loss: L_light = 10 L_tv + L_exp + L_ssim ---------------------------------------------

def tv_loss(r: torch.Tensor, norm: str = "reference") -> torch.Tensor:
    """Total variation of the residual r, channels summed.

    ``reference`` (released code): mean squared differences of vertical and horizontal neighbours,
    ``2 * (sum dy^2 / count_y + sum dx^2 / count_x) / batch``. ``paper`` (eq. 3): the sum of squared
    differences divided by the number of pixels N = batch * H * W. The two differ by a factor that
    depends only on the image size."""
    n, _, h, w = r.shape
    dy = (r[:, :, 1:, :] - r[:, :, :-1, :]).pow(2).sum()
    dx = (r[:, :, :, 1:] - r[:, :, :, :-1]).pow(2).sum()
    if norm == "reference":
        return 2 * (dy / ((h - 1) * w) + dx / (h * (w - 1))) / n
    if norm == "paper":
        return (dy + dx) / (n * h * w)
    raise _unknown("loss.tv_norm", norm, TV_NORMS)


def exposure_loss(relit: torch.Tensor, target: torch.Tensor | float, patch: int = 32,
                  norm: str = "l2") -> torch.Tensor:
    """Mean distance of each ``patch`` x ``patch`` average of the channel mean to ``target``:
    squared (``l2``, reference code) or absolute (``l1``, paper eq. 4)."""
    diff = F.avg_pool2d(relit.mean(dim=1, keepdim=True), patch) - target
    if norm == "l2":
        return diff.pow(2).mean()
    if norm == "l1":
        return diff.abs().mean()
    raise _unknown("loss.exposure_norm", norm, EXPOSURE_NORMS)


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
    raise _unknown("loss.exposure_target", mode, EXPOSURE_TARGETS)


def light_loss(relit: torch.Tensor, image: torch.Tensor, residual: torch.Tensor, target: torch.Tensor,
               exposure_mode: str = "normalized", exposure_norm: str = "l2", tv_weight: float = 10.0,
               exp_weight: float = 1.0, ssim_weight: float = 1.0, patch: int = 32,
               tv_norm: str = "reference") -> torch.Tensor:
    """``L_light = 10 L_tv(r) + L_ssim(R, I) + L_exp(R, E)`` for ``R = I + r``.

    The TV term takes the residual ``r`` as the network produced it (not ``R - I``, which differs
    from it by rounding).
    """
    exposed = relit if exposure_mode == "normalized" else to_intensity(relit)
    return (tv_weight * tv_loss(residual, tv_norm) + ssim_weight * ssim_loss(relit, image)
            + exp_weight * exposure_loss(exposed, target, patch, exposure_norm))


# --- segmentation loss ---------------------------------------------------------------------------

def segmentation_loss(logits: torch.Tensor, label: torch.Tensor, weights: torch.Tensor,
                      norm: str = "reference") -> torch.Tensor:
    """Class-weighted cross entropy (weights w with std 0.05), ignoring 255.

    ``reference`` (released code): PyTorch's weighted mean, ``sum_i w_yi nll_i / sum_i w_yi``.
    ``paper`` (eq. 7): ``sum_i w_yi nll_i / (N |C|)`` with N the labelled pixels and |C| the classes."""
    if norm == "reference":
        return F.cross_entropy(logits, label, weight=weights, ignore_index=IGNORE_INDEX)
    if norm == "paper":
        total = F.cross_entropy(logits, label, weight=weights, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / ((label != IGNORE_INDEX).sum().clamp_min(1) * logits.shape[1])
    raise _unknown("loss.seg_norm", norm, SEG_NORMS)


# --- static loss (eq. 8-9) -------------------------------------------------------------------------

def pseudo_label(day_logits: torch.Tensor, night_logits: torch.Tensor, weights: torch.Tensor,
                 mode: str = "reference_blend") -> torch.Tensor:
    """F_td: the static-class pseudo label of the target pair (pixels won by a dynamic class -> 255).

    ``paper``: argmax of the re-weighted day probabilities ``w * softmax(P_td)``.
    ``reference_blend`` (the released code): a 19-channel score whose static channels blend the
    day and night logits, ``0.8 P_td + 0.2 P_tn`` where the day logit exceeds 0.4 and
    ``0.2 P_td + 0.8 P_tn`` elsewhere, and whose dynamic channels are the NIGHT logits ``P_tn``;
    the score is multiplied by w before the argmax. A pixel where the night prediction's dynamic
    class wins (a car at night on a road seen by day) is therefore ignored.
    """
    day_logits, night_logits = day_logits.detach(), night_logits.detach()
    w = weights.view(1, -1, 1, 1)
    if mode == "paper":
        score = torch.softmax(day_logits, dim=1) * w
    elif mode == "reference_blend":
        day_static, night_static = day_logits[:, :NUM_STATIC], night_logits[:, :NUM_STATIC]
        alpha = torch.where(day_static > 0.4, 0.8, 0.2)
        blended = alpha * day_static + (1 - alpha) * night_static
        score = torch.cat([blended, night_logits[:, NUM_STATIC:]], dim=1) * w
    else:
        raise _unknown("loss.pseudo_label", mode, PSEUDO_LABELS)
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
    raise _unknown("loss.static_probs", mode, STATIC_PROBS)


#: The released StaticLoss means to give each pixel its eight neighbours' pseudo labels, but its
#: eight "neighbour" maps are one tensor (``a, b, c, d = t, t, t, t``) into which it writes eight
#: shifts in place, in this order. (dy, dx): pixel (i, j) takes the label of (i + dy, j + dx) where
#: that lies inside the map and keeps its own elsewhere.
RELEASED_LABEL_SHIFTS = ((1, 0), (-1, 0), (0, -1), (0, 1), (1, -1), (-1, -1), (-1, 1), (1, 1))


def released_static_labels(pseudo: torch.Tensor) -> torch.Tensor:
    """The label map the released StaticLoss ends up using: ``RELEASED_LABEL_SHIFTS`` applied in
    turn, each reading its source before writing (as NumPy would, and as CUDA kernels mostly did;
    PyTorch leaves in-place copies between overlapping slices undefined and now refuses them).
    Away from the borders the shifts undo each other; the first and last rows and the last two
    columns end up with other pixels' labels."""
    t = pseudo.clone()
    h, w = t.shape[-2:]
    for dy, dx in RELEASED_LABEL_SHIFTS:
        dst = (slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
        src = (slice(max(0, dy), h - max(0, -dy)), slice(max(0, dx), w - max(0, -dx)))
        t[(..., *dst)] = t[(..., *src)].clone()
    return t


def static_loss(night_logits: torch.Tensor, pseudo: torch.Tensor, weights: torch.Tensor | None = None,
                gamma: float = 1.0, probs_mode: str = "static_softmax", neighbourhood: str = "3x3",
                eps: float = 1e-7) -> torch.Tensor:
    """Focal loss of the night prediction on the static pseudo labels (eq. 8-9).

    ``neighbourhood="3x3"`` (paper eq. 9): at pixel i the probability of the pseudo class is
    ``p_i = max_{j in 3x3(i)} P_tn(F_td(j), i)``: a neighbour's pseudo label counts, which tolerates
    the coarse misalignment of day/night pairs; neighbours outside the map or ignored count as none.
    ``"reference_aliased"`` (what the released code computes, see ``released_static_labels``):
    the neighbourhood collapses to the pixel itself, on labels shifted at the borders.
    Pixels whose own (for ``reference_aliased``: shifted) label is ignored do not contribute.
    ``weights`` (the reference code's choice) multiplies the static probabilities by w before the
    max; ``p`` is clamped to ``[eps, 1 - eps]`` (with w > 1 the product can exceed 1). Loss: mean
    over supervised pixels of ``-(1 - p)^gamma log p``.
    """
    probs = static_probabilities(night_logits, probs_mode)
    if weights is not None:
        probs = probs * weights[:NUM_STATIC].view(1, -1, 1, 1)
    if neighbourhood == "reference_aliased":
        pseudo, offsets = released_static_labels(pseudo), [(1, 1)]
    elif neighbourhood == "3x3":
        offsets = [(dy, dx) for dy in range(3) for dx in range(3)]
    else:
        raise _unknown("loss.static_neighbourhood", neighbourhood, STATIC_NEIGHBOURHOODS)
    valid = pseudo != IGNORE_INDEX
    onehot = F.one_hot(torch.where(valid, pseudo, NUM_STATIC), NUM_STATIC + 1)[..., :NUM_STATIC]
    onehot = F.pad(onehot.permute(0, 3, 1, 2).to(probs.dtype), (1, 1, 1, 1))  # neighbours outside count as none
    h, w = pseudo.shape[-2:]
    p = torch.stack([(onehot[:, :, dy:dy + h, dx:dx + w] * probs).sum(dim=1) for dy, dx in offsets]).amax(dim=0)
    p = p[valid].clamp(eps, 1 - eps)
    if p.numel() == 0:
        return night_logits.sum() * 0.0
    return (-(1 - p).pow(gamma) * p.log()).mean()


# --- adversarial losses (least squares) -----------------------------------------------------------

def least_squares(d_out: torch.Tensor, label: float) -> torch.Tensor:
    """``mean (D(P) - label)^2``. The generator's adversarial loss is ``(D_d(P_td) - r)^2 +
    (D_n(P_tn) - r)^2`` with r the source label: target predictions should look like source ones."""
    return (d_out - label).pow(2).mean()


def discriminator_loss(d_source: torch.Tensor, d_target: torch.Tensor, source_label: float,
                       target_label: float) -> torch.Tensor:
    """``0.5 (D(P_s) - r)^2 + 0.5 (D(P_t) - f)^2``."""
    return 0.5 * least_squares(d_source, source_label) + 0.5 * least_squares(d_target, target_label)
