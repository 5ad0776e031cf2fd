"""DANNet's losses against independent computations: loops over pixels and windows, hand-made cases."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from runtime.classes import IGNORE_INDEX, class_weights
from train import losses


def test_tv_loss_by_loops() -> None:
    r = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    a = r.numpy()
    dy = sum((a[n, c, i + 1, j] - a[n, c, i, j]) ** 2 for n in range(2) for c in range(3) for i in range(3) for j in range(5))
    dx = sum((a[n, c, i, j + 1] - a[n, c, i, j]) ** 2 for n in range(2) for c in range(3) for i in range(4) for j in range(4))
    expected = 2 * (dy / (3 * 5) + dx / (4 * 4)) / 2
    assert losses.tv_loss(r).item() == pytest.approx(expected, rel=1e-12)
    assert losses.tv_loss(torch.ones(1, 3, 8, 8)).item() == 0.0
    # paper, eq. 3: the same squared differences over the number of pixels N = B * H * W
    assert losses.tv_loss(r, "paper").item() == pytest.approx((dy + dx) / (2 * 4 * 5), rel=1e-12)
    with pytest.raises(ValueError, match="tv_norm"):
        losses.tv_loss(r, "l1")


def test_segmentation_loss_normalisations_by_loops() -> None:
    """reference: sum w nll / sum w over labelled pixels; paper (eq. 7): sum w nll / (N |C|)."""
    torch.manual_seed(0)
    logits = torch.randn(2, 19, 3, 4, dtype=torch.float64)
    label = torch.randint(0, 19, (2, 3, 4))
    label[0, 0, :2] = IGNORE_INDEX
    w = torch.from_numpy(class_weights(0.05)).double()
    z, y = logits.numpy(), label.numpy()
    terms = [(float(w[y[n, i, j]]), -(z[n, y[n, i, j], i, j] - math.log(np.exp(z[n, :, i, j]).sum())))
             for n in range(2) for i in range(3) for j in range(4) if y[n, i, j] != IGNORE_INDEX]
    weighted = sum(wk * nll for wk, nll in terms)
    assert losses.segmentation_loss(logits, label, w).item() == pytest.approx(
        weighted / sum(wk for wk, _ in terms), rel=1e-12)
    assert losses.segmentation_loss(logits, label, w, "paper").item() == pytest.approx(
        weighted / (len(terms) * 19), rel=1e-12)
    with pytest.raises(ValueError, match="seg_norm"):
        losses.segmentation_loss(logits, label, w, "mean")


def test_exposure_loss_by_patches() -> None:
    x = torch.rand(1, 3, 64, 96, dtype=torch.float64)
    gray = x.numpy()[0].mean(axis=0)
    target = 0.3
    patches = [gray[i:i + 32, j:j + 32].mean() for i in (0, 32) for j in (0, 32, 64)]
    squared, absolute = np.mean([(p - target) ** 2 for p in patches]), np.mean([abs(p - target) for p in patches])
    assert losses.exposure_loss(x, target, 32).item() == pytest.approx(squared, rel=1e-12)
    assert losses.exposure_loss(x, target, 32, "l1").item() == pytest.approx(absolute, rel=1e-12)
    with pytest.raises(ValueError, match="exposure_norm"):
        losses.exposure_loss(x, target, 32, "l3")


def ssim_by_windows(x: np.ndarray, y: np.ndarray) -> float:
    """Mean of clamp((1 - SSIM)/2) with SSIM from each pixel's 3x3 reflection-padded window."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    yp = np.pad(y, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    values = []
    n, c, h, w = x.shape
    for b, ch, i, j in itertools.product(range(n), range(c), range(h), range(w)):
        wx, wy = xp[b, ch, i:i + 3, j:j + 3], yp[b, ch, i:i + 3, j:j + 3]
        mx, my = wx.mean(), wy.mean()
        vx, vy, cxy = (wx ** 2).mean() - mx ** 2, (wy ** 2).mean() - my ** 2, (wx * wy).mean() - mx * my
        ssim = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
        values.append(min(max((1 - ssim) / 2, 0.0), 1.0))
    return float(np.mean(values))


def test_ssim_loss_by_windows() -> None:
    x = torch.rand(1, 2, 5, 6, dtype=torch.float64)
    y = (x + 0.3 * torch.rand_like(x)).clamp(0, 1)
    assert losses.ssim_loss(x, y).item() == pytest.approx(ssim_by_windows(x.numpy(), y.numpy()), rel=1e-10)
    assert losses.ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-12)


def test_light_loss_weights_and_exposure_modes() -> None:
    image = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    residual = 0.1 * torch.randn_like(image)
    relit = image + residual
    target = image.mean()
    expected = (10 * losses.tv_loss(residual) + losses.exposure_loss(relit, target, 32)
                + losses.ssim_loss(relit, image))
    assert losses.light_loss(relit, image, residual, target, "normalized").item() == pytest.approx(expected.item())
    l1 = 10 * losses.tv_loss(residual) + losses.exposure_loss(relit, target, 32, "l1") + losses.ssim_loss(relit, image)
    assert losses.light_loss(relit, image, residual, target, "normalized", "l1").item() == pytest.approx(l1.item())
    # paper mode: E and the relit image in [0, 1] intensities
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    night = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    e = losses.exposure_target(night, "intensity")
    assert e.item() == pytest.approx((night * std + mean).mean().item())
    assert losses.exposure_target(night, "normalized").item() == pytest.approx(night.mean().item())
    with pytest.raises(ValueError, match="exposure_target"):
        losses.exposure_target(night, "bogus")


def test_segmentation_loss_is_weighted_ce_ignoring_255() -> None:
    logits = torch.randn(1, 19, 2, 2, dtype=torch.float64)
    label = torch.tensor([[[0, 13], [255, 17]]])
    w = torch.from_numpy(class_weights(0.05)).double()
    num = den = 0.0
    for (i, j) in ((0, 0), (0, 1), (1, 1)):
        k = int(label[0, i, j])
        logp = logits[0, :, i, j] - torch.logsumexp(logits[0, :, i, j], 0)
        num += -w[k].item() * logp[k].item()
        den += w[k].item()
    assert losses.segmentation_loss(logits, label, w).item() == pytest.approx(num / den)


# --- static loss and pseudo labels ----------------------------------------------------------------------

def static_loss_brute_force(logits: np.ndarray, pseudo: np.ndarray, w: np.ndarray | None, gamma: float,
                            probs_mode: str) -> float:
    """Eq. 9 pixel by pixel: p_i = max over the 3x3 neighbours j of P_tn(F_td(j), i), in [eps, 1 - eps]."""
    n, c, h, width = logits.shape
    total, count = 0.0, 0
    for b, i, j in itertools.product(range(n), range(h), range(width)):
        if pseudo[b, i, j] == IGNORE_INDEX:
            continue
        z = logits[b, :, i, j]
        if probs_mode == "static_softmax":
            e = np.exp(z[:11] - z[:11].max())
            probs = e / e.sum()
        else:
            e = np.exp(z - z.max())
            probs = (e / e.sum())[:11]
        if w is not None:
            probs = probs * w[:11]
        best = 0.0
        for di, dj in itertools.product((-1, 0, 1), repeat=2):
            ii, jj = i + di, j + dj
            if 0 <= ii < h and 0 <= jj < width and pseudo[b, ii, jj] != IGNORE_INDEX:
                best = max(best, probs[pseudo[b, ii, jj]])
        best = min(max(best, 1e-7), 1 - 1e-7)
        total += -((1 - best) ** gamma) * math.log(best)
        count += 1
    return total / count


@pytest.mark.parametrize("probs_mode", ["static_softmax", "full_softmax"])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_static_loss_against_brute_force(probs_mode: str, weighted: bool, gamma: float) -> None:
    g = torch.Generator().manual_seed(7)
    logits = 3 * torch.randn(2, 19, 6, 7, generator=g, dtype=torch.float64)
    pseudo = torch.randint(0, 11, (2, 6, 7), generator=g)
    pseudo[torch.rand(2, 6, 7, generator=g) < 0.3] = IGNORE_INDEX
    w = class_weights(0.05).astype(np.float64)
    ours = losses.static_loss(logits, pseudo, torch.from_numpy(w) if weighted else None, gamma, probs_mode)
    expected = static_loss_brute_force(logits.numpy(), pseudo.numpy(), w if weighted else None, gamma, probs_mode)
    assert ours.item() == pytest.approx(expected, rel=1e-9)


def test_static_loss_counts_a_neighbours_label() -> None:
    """A pixel whose own pseudo class is unlikely but whose neighbour's class is likely gets a low loss."""
    logits = torch.full((1, 19, 3, 3), -10.0, dtype=torch.float64)
    logits[0, 2] = 10.0  # the night prediction says 'building' everywhere
    pseudo = torch.full((1, 3, 3), 0)  # the day says 'road'...
    pseudo[0, 0, 0] = 2  # ...except one corner pixel, a neighbour of the centre
    only_road = torch.full((1, 3, 3), 0)
    near = losses.static_loss(logits, pseudo)
    far = losses.static_loss(logits, only_road)
    assert near.item() < far.item()


def test_static_loss_clamps_weighted_probabilities_below_one() -> None:
    """With w > 1, w * p exceeds 1 where the night is sure; the loss must not turn negative there:
    p is clamped to 1 - eps, which leaves ``-(eps)^gamma log(1 - eps)`` ~ 1e-14 (unclamped, w p = 1.2
    would give ``-(1 - 1.2) log 1.2`` = +0.036 and a gradient pushing p further up)."""
    logits = torch.full((1, 19, 1, 1), -30.0, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        logits[0, 0] = 30.0  # P(road) = 1 - 1e-25
    weights = torch.ones(19, dtype=torch.float64)
    weights[0] = 1.2
    pseudo = torch.zeros(1, 1, 1, dtype=torch.long)
    for neighbourhood in ("3x3", "reference_aliased"):
        loss = losses.static_loss(logits, pseudo, weights, neighbourhood=neighbourhood)
        assert loss.item() == pytest.approx(-1e-7 * math.log(1 - 1e-7), abs=1e-20)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.all(grad == 0)


def test_released_static_labels_by_hand() -> None:
    """The released StaticLoss's eight in-place shifts of one label map, worked out on paper for
    a 3x4 map with labels 0..11 (row-major), each shift reading its source before writing:
    (1,0) rows take the row below: [[4..7],[8..11],[8..11]]; (-1,0) the row above: [[4..7],[4..7],
    [8..11]]; (0,-1) columns take the left one: [[4,4,5,6],[4,4,5,6],[8,8,9,10]]; (0,1) the right
    one: [[4,5,6,6],[4,5,6,6],[8,9,10,10]]; (1,-1) from below-left, rows 0-1, cols 1-3:
    [[4,4,5,6],[4,8,9,10],[8,9,10,10]]; (-1,-1) from above-left, rows 1-2, cols 1-3:
    [[4,4,5,6],[4,4,4,5],[8,4,8,9]]; (-1,1) from above-right, rows 1-2, cols 0-2:
    [[4,4,5,6],[4,5,6,5],[4,4,5,9]]; (1,1) from below-right, rows 0-1, cols 0-2:
    [[5,6,5,6],[4,5,9,5],[4,4,5,9]]. Away from the borders each straight shift is undone by the
    opposite one and the four diagonal ones add up to no shift: the interior keeps its labels."""
    labels = torch.arange(12).view(1, 3, 4)
    expected = [[5, 6, 5, 6], [4, 5, 9, 5], [4, 4, 5, 9]]
    assert losses.released_static_labels(labels).tolist() == [expected]
    assert labels.tolist() == [[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]]  # the input is left alone
    larger = torch.arange(72).view(1, 8, 9)
    assert torch.equal(losses.released_static_labels(larger)[:, 1:-1, :-2], larger[:, 1:-1, :-2])


def test_reference_aliased_static_loss_is_per_pixel_on_the_shifted_labels() -> None:
    """No neighbourhood: each pixel is scored on its own (shifted) label; an ignored shifted label
    drops the pixel. Checked against the focal loss written out per pixel."""
    g = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(1, 19, 4, 5, generator=g, dtype=torch.float64)
    pseudo = torch.randint(0, 11, (1, 4, 5), generator=g)
    pseudo[0, 2, 2] = IGNORE_INDEX
    w = class_weights(0.05).astype(np.float64)
    shifted = losses.released_static_labels(pseudo)[0].numpy()
    z = logits[0, :11].numpy()
    probs = np.exp(z - z.max(axis=0)) / np.exp(z - z.max(axis=0)).sum(axis=0)
    terms = []
    for i, j in itertools.product(range(4), range(5)):
        k = shifted[i, j]
        if k != IGNORE_INDEX:
            p = min(max(w[k] * probs[k, i, j], 1e-7), 1 - 1e-7)
            terms.append(-(1 - p) * math.log(p))
    ours = losses.static_loss(logits, pseudo, torch.from_numpy(w), neighbourhood="reference_aliased")
    assert ours.item() == pytest.approx(np.mean(terms), rel=1e-12)
    with pytest.raises(ValueError, match="static_neighbourhood"):
        losses.static_loss(logits, pseudo, neighbourhood="5x5")


def test_pseudo_label_modes_on_hand_made_logits() -> None:
    w = torch.ones(19, dtype=torch.float64)
    # pixel 0: day says road (logit 1.0 > 0.4 -> 0.8 day), night says sidewalk more strongly
    # pixel 1: day's best static logit is 0.3 (<= 0.4 -> 0.2 day / 0.8 night): night's sidewalk wins
    # pixel 2: day says car (dynamic) -> ignored in both modes
    # pixel 3: day says road (logit 2), night says car (logit 3): the reference's dynamic channels
    #          are the night's, car wins -> ignored; the paper's day prediction says road
    day = torch.full((1, 19, 1, 4), -5.0, dtype=torch.float64)
    night = torch.full((1, 19, 1, 4), -5.0, dtype=torch.float64)
    day[0, 0, 0, 0], night[0, 1, 0, 0] = 1.0, 2.0
    day[0, 0, 0, 1], night[0, 1, 0, 1] = 0.3, 2.0
    day[0, 13, 0, 2], night[0, 13, 0, 2] = 5.0, 5.0
    day[0, 0, 0, 3], night[0, 13, 0, 3] = 2.0, 3.0
    ref = losses.pseudo_label(day, night, w, "reference_blend")
    # pixel 0: road 0.8*1 + 0.2*-5 = -0.2; sidewalk 0.2*-5 + 0.8*2 = 0.6 -> sidewalk
    # pixel 1: road 0.2*0.3 + 0.8*-5 = -3.94; sidewalk 0.2*-5 + 0.8*2 = 0.6 -> sidewalk
    # pixel 3: road 0.8*2 + 0.2*-5 = 0.6; car (night) 3.0 -> car -> 255
    assert ref.tolist() == [[[1, 1, IGNORE_INDEX, IGNORE_INDEX]]]
    paper = losses.pseudo_label(day, night, w, "paper")  # the day prediction alone
    assert paper.tolist() == [[[0, 0, IGNORE_INDEX, 0]]]
    # re-weighting changes the argmax: a large weight on sidewalk wins in the paper mode too
    w2 = w.clone()
    w2[1] = 1e4
    assert losses.pseudo_label(day, night, w2, "paper")[0, 0, 0].item() == 1
    # ... and in the reference mode it multiplies the (blended) logits: pixel 3's road
    # 0.6 * 6 = 3.6 beats the night's car 3.0 when w(road) = 6
    w3 = w.clone()
    w3[0] = 6.0
    assert losses.pseudo_label(day, night, w3, "reference_blend")[0, 0, 3].item() == 0
    with pytest.raises(ValueError, match="pseudo_label"):
        losses.pseudo_label(day, night, w, "other")


def test_least_squares_targets() -> None:
    d_day, d_night = torch.full((2, 1, 3, 3), 0.25), torch.full((2, 1, 3, 3), 0.75)
    # generator: both target predictions pushed towards the source label r = 0
    assert losses.least_squares(d_day, 0.0).item() + losses.least_squares(d_night, 0.0).item() == pytest.approx(
        0.25 ** 2 + 0.75 ** 2)
    # discriminator: 0.5 (D(P_s) - r)^2 + 0.5 (D(P_t) - f)^2 with r = 0, f = 1
    assert losses.discriminator_loss(d_day, d_night, 0.0, 1.0).item() == pytest.approx(0.5 * 0.0625 + 0.5 * 0.0625)
    assert losses.discriminator_loss(torch.zeros(1), torch.ones(1), 0.0, 1.0).item() == 0.0
