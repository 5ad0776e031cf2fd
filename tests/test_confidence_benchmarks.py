"""The confidence benchmarks: `dannet-bench reliability`'s statistics against direct computations on the pixels
themselves, the command end to end, and `dannet-bench confidence-cost`."""
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
    which = np.minimum(np.floor(confidence * 10), 9).astype(int)  # bin b holds confidences in [b/10, (b+1)/10)
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


@pytest.fixture(scope="module")
def confidence_graph(tiny_confidence: dict):
    return tiny_confidence["onnx"]


def test_reliability_command_counts_every_labelled_pixel_once(confidence_graph, tmp_path) -> None:
    """The command's table against the model's own outputs scored here pixel by pixel."""
    import json

    from PIL import Image

    from benchmarks.cli import main as bench_main
    from runtime.segmenter import Segmenter
    from train.data import dataset_samples
    from train.data.datasets import load_image, load_label
    from train.data.synth import generate

    root = generate(tmp_path / "dz", "darkzurich", 3, (96, 160), seed=4)
    assert bench_main(["reliability", "--model", str(confidence_graph), "--dataset", "darkzurich-val", "--root",
                       str(root), "--bins", "5", "--json", str(tmp_path / "r.json"),
                       "--plot", str(tmp_path / "r.png")]) == 0
    table = json.loads((tmp_path / "r.json").read_text())
    seg = Segmenter(confidence_graph)
    levels, wrong = [], []
    for sample in dataset_samples("darkzurich-val", root):
        image = load_image(sample.image)
        predicted, confidence = seg.process(np.asarray(image))
        label = load_label(sample, image.size)
        valid = label != 255
        levels.append(confidence[valid])
        wrong.append(predicted[valid] != label[valid])
    levels, wrong = np.concatenate(levels), np.concatenate(wrong)
    assert len(np.unique(levels)) > 20  # an unsure model: the bins are not all one level
    assert table["pixels"] == levels.size and table["error_rate"] == pytest.approx(wrong.mean())
    right_levels, wrong_levels = levels[~wrong], np.sort(levels[wrong])  # pairs counted by sorting, not binning
    below = np.searchsorted(wrong_levels, right_levels, side="left")
    equal = np.searchsorted(wrong_levels, right_levels, side="right") - below
    pairs = right_levels.size * wrong_levels.size
    assert table["auroc"] == pytest.approx((below.sum() + 0.5 * equal.sum()) / pairs)
    assert sum(row["pixels"] for row in table["bins"]) == levels.size
    assert Image.open(tmp_path / "r.png").size[0] > 400


def test_reliability_refuses_a_model_without_confidence(tiny_graphs: dict, tmp_path,
                                                        capsys: pytest.CaptureFixture) -> None:
    from benchmarks.cli import main as bench_main

    assert bench_main(["reliability", "--model", str(tiny_graphs["portable"]), "--dataset", "synthetic",
                       "--root", str(tmp_path)]) == 2
    assert "has no confidence output; export it with --confidence" in capsys.readouterr().err


def test_confidence_cost_times_both_exports_of_one_checkpoint(tiny_graphs: dict, tmp_path) -> None:
    import json

    from benchmarks.cli import main as bench_main

    assert bench_main(["confidence-cost", "--checkpoint", str(tiny_graphs["checkpoint"]), "--size", "64x128:96x160",
                       "--runs", "2", "--warmup", "0", "--threads", "1", "--json", str(tmp_path / "c.json")]) == 0
    row = json.loads((tmp_path / "c.json").read_text())["rows"][0]
    assert row["input_size"] == [64, 128] and row["output_size"] == [96, 160]
    medians = row["median_ms"]
    assert row["ratio"] == pytest.approx(medians["labels+confidence"] / medians["labels"])


def test_confidence_cost_names_its_own_flag_for_a_size_the_graph_cannot_take(tiny_graphs: dict, capsys) -> None:
    from benchmarks.cli import main as bench_main

    capsys.readouterr()
    assert bench_main(["confidence-cost", "--checkpoint", str(tiny_graphs["checkpoint"]), "--size", "66x128",
                       "--runs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dannet-bench confidence-cost: error: --size 66x128:66x128: ") and "divisible by 4" in err
