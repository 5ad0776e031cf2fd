"""``dannet-bench reliability``'s statistics against direct computations on the pixels themselves."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.reliability import LEVELS, Reliability, count


def pixels(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Confidence levels and right/wrong flags where low confidence is wrong more often."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(13, 256, n)
    wrong = rng.random(n) > levels / 255
    return levels, wrong


def from_pixels(levels: np.ndarray, wrong: np.ndarray) -> Reliability:
    predicted = np.where(wrong, 1, 0).astype(np.uint8)
    right, bad = count(levels.astype(np.uint8), predicted, np.zeros_like(predicted))
    return Reliability(right, bad)


@pytest.mark.parametrize("seed", [0, 1])
def test_auroc_is_the_share_of_right_wrong_pairs_ranked_right(seed: int) -> None:
    levels, wrong = pixels(seed, 800)
    a, b = levels[~wrong][:, None], levels[wrong][None, :]
    pairs = (a > b).mean() + 0.5 * (a == b).mean()
    assert from_pixels(levels, wrong).auroc() == pytest.approx(pairs, abs=1e-12)


def test_bins_and_ece_match_binning_the_pixels() -> None:
    levels, wrong = pixels(2)
    result = from_pixels(levels, wrong)
    confidence = levels / 255
    which = np.minimum((levels * 10) // 256, 9)
    gaps = 0.0
    rows = {round(r["low"] * 10): r for r in result.bins(10)}
    for b in np.unique(which):
        inside = which == b
        assert rows[b]["pixels"] == inside.sum()
        assert rows[b]["confidence"] == pytest.approx(confidence[inside].mean())
        assert rows[b]["error_rate"] == pytest.approx(wrong[inside].mean())
        gaps += inside.sum() * abs((1 - wrong[inside].mean()) - confidence[inside].mean())
    assert sorted(rows) == sorted(np.unique(which))
    assert result.expected_calibration_error(10) == pytest.approx(gaps / len(levels))
    assert result.error_rate == pytest.approx(wrong.mean())


def test_a_confidence_that_predicts_nothing_scores_half() -> None:
    rng = np.random.default_rng(3)
    levels = rng.integers(0, 256, 200_000)
    wrong = rng.random(levels.size) < 0.3  # independent of the level
    assert from_pixels(levels, wrong).auroc() == pytest.approx(0.5, abs=0.01)
    assert from_pixels(*pixels(4, 200_000)).auroc() > 0.6


def test_least_confident_share_and_error_rates() -> None:
    levels, wrong = pixels(5)
    low = from_pixels(levels, wrong).least_confident(0.1)
    below = levels < low["below_level"]
    assert low["share"] == pytest.approx(below.mean()) and low["share"] >= 0.1
    assert (levels < low["below_level"] - 1).mean() < 0.1  # the smallest whole-level cut that reaches 10%
    assert low["error_rate"] == pytest.approx(wrong[below].mean())
    assert low["error_rate_rest"] == pytest.approx(wrong[~below].mean())


def test_ignored_pixels_are_not_counted() -> None:
    label = np.array([[0, 255], [1, 255]], np.uint8)
    predicted = np.array([[0, 0], [0, 1]], np.uint8)
    levels = np.array([[200, 10], [100, 10]], np.uint8)
    right, wrong = count(levels, predicted, label)
    assert right.sum() == 1 and right[200] == 1 and wrong.sum() == 1 and wrong[100] == 1
    assert right.size == wrong.size == LEVELS
