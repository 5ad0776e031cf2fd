"""Temporal stability: the flicker metric against hand counts, the stabilisers against hand-made label
sequences and a per-pixel reference written here, and ``dannet-run --temporal`` end to end."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.flicker import FlickerMeter, flicker_counts
from runtime.errors import DannetError
from runtime.temporal import TemporalFilter, TemporalOptions

S, X, Y = 1, 7, 9  # a label shown, and two others


def hysteresis_reference(frames: list[np.ndarray], k: int, resets: set[int] = frozenset(),
                         confidences: list[np.ndarray] | None = None, level: int = 256) -> list[np.ndarray]:
    """The hysteresis rule pixel by pixel, as the docstring states it: keep the shown label until another one
    was predicted k frames in a row (or at confidence >= level); start afresh at the frames in ``resets``."""
    shown, run_label, run_length, out = None, None, None, []
    for t, labels in enumerate(frames):
        if t == 0 or t in resets:
            shown, run_label, run_length = labels.astype(int), labels.astype(int), np.zeros(labels.shape, int)
            out.append(shown.copy())
            continue
        for p in np.ndindex(labels.shape):
            new = int(labels[p])
            if new == shown[p]:
                run_length[p] = 0
            else:
                run_length[p] = run_length[p] + 1 if new == run_label[p] else 1
                sure = confidences is not None and confidences[t][p] >= level
                if run_length[p] >= k or sure:
                    shown[p], run_length[p] = new, 0
            run_label[p] = new
        out.append(shown.copy())
    return out


def run(options: TemporalOptions, frames: list, confidences: list | None = None, fresh: set[int] = frozenset()) -> list:
    stable = TemporalFilter(options)
    return [stable.update(np.asarray(f, np.uint8), None if confidences is None else np.asarray(confidences[t], np.uint8),
                          t in fresh).copy() for t, f in enumerate(frames)]


# --- the flicker metric -----------------------------------------------------------------------------------------

TRUTH = [np.array([[0, 0, 1], [255, 2, 2]]), np.array([[0, 1, 1], [255, 2, 2]]), np.array([[0, 1, 1], [255, 2, 2]])]
PREDICTED = [np.array([[0, 0, 1], [3, 2, 2]]), np.array([[5, 1, 1], [4, 2, 3]]), np.array([[5, 1, 1], [4, 2, 2]])]


def test_flicker_counts_only_pixels_whose_truth_stayed_and_is_labelled() -> None:
    # frames 0 -> 1: truth unchanged and labelled at (0,0) (0,2) (1,1) (1,2); the prediction changed at (0,0) and
    # (1,2). (0,1) changed with its truth, (1,0) is unlabelled: neither counts
    assert flicker_counts(PREDICTED[0], PREDICTED[1], TRUTH[0], TRUTH[1]) == (2, 4)
    # frames 1 -> 2: five labelled pixels kept their truth; the prediction changed at (1,2) only
    assert flicker_counts(PREDICTED[1], PREDICTED[2], TRUTH[1], TRUTH[2]) == (1, 5)


@pytest.mark.parametrize("cut_at, expected", [(None, 3 / 9), (2, 2 / 4), (1, 1 / 5)])
def test_flicker_over_a_clip_leaves_out_pairs_across_a_cut(cut_at: int | None, expected: float) -> None:
    meter = FlickerMeter()
    for t, (predicted, truth) in enumerate(zip(PREDICTED, TRUTH)):
        meter.update(predicted, truth, cut=t == cut_at)
    assert meter.flicker == pytest.approx(expected)


# --- the stabilisers on hand-made sequences ---------------------------------------------------------------------

def pixel(*labels: int) -> list[np.ndarray]:
    """A one-pixel clip on a 2 x 2 map whose other pixels always show S (the change stays under a cut)."""
    return [np.array([[label, S], [S, S]]) for label in labels]


def test_hysteresis_suppresses_a_one_frame_flicker_and_adopts_a_change_after_k_frames() -> None:
    shown = [f[0, 0] for f in run(TemporalOptions("hysteresis", frames=3, cut_share=0.5),
                                  pixel(S, X, S, X, X, Y, X, X, X, X))]
    # X once, X twice then Y: never three in a row until the last four X (adopted on the third)
    assert shown == [S, S, S, S, S, S, S, S, X, X]


def test_hysteresis_adopts_a_confident_label_at_once() -> None:
    options = TemporalOptions("hysteresis", frames=3, confidence=0.8, cut_share=0.5)
    levels = [np.full((2, 2), level) for level in (255, 203, 204, 100)]  # 0.8 * 255 = 204
    shown = [f[0, 0] for f in run(options, pixel(S, X, Y, S), levels)]
    assert shown == [S, S, Y, Y]  # X at 203 stays out, Y at 204 is adopted, S at 100 only starts a run


def test_ema_suppresses_a_one_frame_flicker_and_adopts_a_change_when_its_average_is_higher() -> None:
    options = TemporalOptions("ema", frames=4, cut_share=0.5)
    assert [f[0, 0] for f in run(options, pixel(S, X, S, S))] == [S, S, S, S]  # S 191 vs X 64, then 207 vs 48
    # weight 1/4, votes of 255: after X, X, X the averages of S are 191, 143, 107 and of X 64, 112, 148
    assert [f[0, 0] for f in run(options, pixel(S, X, X, X, X))] == [S, S, S, X, X]


def test_ema_weighs_votes_by_confidence() -> None:
    """One frame of X at 255 against S at 40: S's average 40 -> 30, X's 0 -> 64: X shown at once."""
    levels = [np.full((2, 2), level) for level in (40, 40, 255)]
    shown = [f[0, 0] for f in run(TemporalOptions("ema", frames=4, cut_share=0.5), pixel(S, S, X), levels)]
    assert shown == [S, S, X]


@pytest.mark.parametrize("mode", ["hysteresis", "ema"])
def test_state_starts_afresh_on_a_cut_a_new_size_and_a_reopened_source(mode: str) -> None:
    options = TemporalOptions(mode, frames=5, cut_share=0.5)
    a, b = np.full((4, 4), S), np.full((4, 4), X)
    b_minority = a.copy()
    b_minority[0, :2] = X  # 2 of 16 pixels: below the cut share, held back
    assert (run(options, [a, b_minority])[1] == a).all()
    assert (run(options, [a, b])[1] == b).all()                       # all pixels changed: a scene cut
    assert (run(options, [a, b_minority], fresh={1})[1] == b_minority).all()  # reconnect
    shown = run(options, [a, np.full((2, 8), X)])[1]                  # a new size
    assert shown.shape == (2, 8) and (shown == X).all()


@pytest.mark.parametrize("mode", ["hysteresis", "ema"])
def test_a_large_frame_difference_is_a_cut_and_a_small_one_is_not(mode: str) -> None:
    """Frames 40 x 64 (a 5 x 8 thumbnail): one level of difference under the threshold (28) is no cut, 29 is."""
    options = TemporalOptions(mode, frames=5, cut_share=1.0, cut_difference=28)
    a, b = np.full((4, 4), S, np.uint8), np.full((4, 4), S, np.uint8)
    b[0, 0] = X
    dark = np.full((40, 64, 3), 10, np.uint8)
    for lift, cut in ((28, False), (29, True)):
        stable = TemporalFilter(options)
        stable.update(a, frame=dark)
        shown = stable.update(b, frame=dark + np.uint8(lift))
        assert (shown[0, 0] == X) == cut and stable.resets == cut, (lift, shown)


def test_hysteresis_matches_the_per_pixel_rule_on_noisy_labels() -> None:
    rng = np.random.default_rng(3)
    frames = [rng.choice([S, S, S, X, Y], size=(6, 7)) for _ in range(30)]
    levels = [rng.integers(0, 256, (6, 7)) for _ in range(30)]
    options = TemporalOptions("hysteresis", frames=2, confidence=0.9, cut_share=1.0)
    for got, want in zip(run(options, frames, levels), hysteresis_reference(frames, 2, confidences=levels, level=230)):
        np.testing.assert_array_equal(got, want)


def test_none_returns_the_labels_as_they_are() -> None:
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert TemporalFilter(TemporalOptions()).update(labels) is labels


@pytest.mark.parametrize("kwargs, words", [
    (dict(mode="median"), "--temporal: expected one of none, hysteresis, ema"),
    (dict(mode="hysteresis", frames=0), "--temporal-frames"),
    (dict(mode="ema", confidence=0.5), "--temporal-confidence"),
    (dict(mode="hysteresis", confidence=1.5), "--temporal-confidence"),
    (dict(mode="ema", cut_share=0.0), "--temporal-cut"),
    (dict(mode="ema", cut_difference=0.0), "--temporal-cut-difference"),
])
def test_bad_options_are_one_line_errors(kwargs: dict, words: str) -> None:
    with pytest.raises(DannetError, match=words):
        TemporalOptions(**kwargs)


# --- dannet-run --temporal --------------------------------------------------------------------------------------

def masks(folder: Path, count: int) -> list[np.ndarray]:
    return [np.asarray(Image.open(folder / f"{i:05d}.png")).astype(int) for i in range(count)]


def test_dannet_run_hysteresis_through_gstreamer_matches_the_rule(tiny_graphs: dict[str, Path], tmp_path: Path) -> None:
    """A video decoded by GStreamer: the masks written are the per-pixel rule applied to the model's labels."""
    import test_pipeline as gst_tests  # skips where GStreamer is missing

    from runtime.classes import PALETTE
    from runtime.segmenter import Segmenter

    model, clip = tiny_graphs["portable"], gst_tests.make_video(tmp_path / "ball.mkv", 8)
    result = gst_tests.dannet_run("--model", str(model), "--input", str(clip), "--output", f"{tmp_path}/out/%05d.png",
                                  "--visualize", "mask", "--temporal", "hysteresis", "--temporal-frames", "3",
                                  "--temporal-cut", "1", "--temporal-cut-difference", "255",
                                  "--stats-interval", "0", "--stats-json", str(tmp_path / "stats.jsonl"))
    assert result.returncode == 0, result.stderr
    seg = Segmenter(model)
    raw = [seg.process(frame) for frame in gst_tests.decode(clip)]
    expected = hysteresis_reference(raw, 3)
    summary = json.loads((tmp_path / "stats.jsonl").read_text().splitlines()[-1])
    assert summary["stages"]["temporal"]["count"] == len(raw)  # the stabiliser is timed as its own stage
    assert any((r != e).any() for r, e in zip(raw, expected))  # the rule changed something here
    for written, want in zip(masks(tmp_path / "out", len(raw)), expected):
        np.testing.assert_array_equal(written, PALETTE[want])


def test_dannet_run_starts_afresh_when_the_source_is_reopened(tiny_graphs: dict[str, Path], tmp_path: Path) -> None:
    """Frames A, B, B, B played twice (--loop 1), k = 2: B is adopted in the first pass; the second pass starts
    with the state reset at A (not one frame of A held back)."""
    from runtime.classes import PALETTE
    from runtime.segmenter import Segmenter

    rng = np.random.default_rng(0)
    a = rng.integers(0, 60, (96, 160, 3), dtype=np.uint8)
    b = a.copy()
    b[20:60, 40:120] = 230  # a lit patch: some labels change
    (tmp_path / "in").mkdir()
    for i, frame in enumerate((a, b, b, b)):
        Image.fromarray(frame).save(tmp_path / "in" / f"f{i}.png")
    import test_pipeline as gst_tests

    model = tiny_graphs["portable"]
    result = gst_tests.dannet_run("--model", str(model), "--input", str(tmp_path / "in"), "--loop", "1", "--output",
                                  f"{tmp_path}/out/%05d.png", "--visualize", "mask", "--temporal", "hysteresis",
                                  "--temporal-frames", "2", "--temporal-cut", "1", "--temporal-cut-difference", "255",
                                  "--stats-interval", "0")
    assert result.returncode == 0, result.stderr
    seg = Segmenter(model)
    raw = [seg.process(frame) for frame in (a, b, b, b)] * 2
    expected = hysteresis_reference(raw, 2, resets={4})
    assert (expected[4] != hysteresis_reference(raw, 2)[4]).any()  # the reset shows at frame 4
    for written, want in zip(masks(tmp_path / "out", 8), expected):
        np.testing.assert_array_equal(written, PALETTE[want])


def test_every_reopening_starts_afresh_even_when_several_are_queued(tiny_graphs: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    """Two pictures played 5 times (--loop 4) into an output slower than reading them: capture reopens the
    folder again before the output has reached the first picture of the previous pass, and every pass still
    starts the stabiliser afresh (4 restarts; the same picture throughout, so no scene cut counts one)."""
    from test_multicam import SlowSink

    from runtime.pipeline import Pipeline, PipelineOptions
    from runtime.segmenter import Segmenter
    from runtime.sources import open_source
    from runtime.uris import parse_input

    picture = np.random.default_rng(0).integers(0, 60, (96, 160, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    for i in range(2):
        Image.fromarray(picture).save(tmp_path / "in" / f"f{i}.png")
    options = PipelineOptions(loop=4, stats_interval_s=0, temporal=TemporalOptions("hysteresis", 3))
    with Segmenter(str(tiny_graphs["portable"])) as segmenter:
        summary = Pipeline(segmenter, open_source(parse_input(str(tmp_path / "in"))), SlowSink(0.05), options,
                           say=lambda line: None).run()
    assert summary["written"] == 10 and summary["temporal_resets"] == 4


def test_dannet_run_temporal_errors_are_one_line(tiny_graphs: dict[str, Path], capsys) -> None:
    import test_pipeline as gst_tests

    model, run_ = str(tiny_graphs["portable"]), ["--input", "test://", "--frames", "2"]
    cases = [
        ([*run_, "--model", model, "--temporal", "hysteresis", "--temporal-confidence", "0.9"],
         ["--temporal-confidence", model, "has no confidence output"]),
        ([*run_, "--model", model, "--temporal", "ema", "--temporal-confidence", "0.9"], ["--temporal-confidence"]),
        ([*run_, "--model", model, "--temporal", "median"], ["--temporal", "median"]),
        ([*run_, "--model", model, "--temporal", "ema", "--temporal-frames", "0"], ["--temporal-frames"]),
        ([*run_, "--model", model, "--temporal", "ema", "--temporal-cut", "0"], ["--temporal-cut"]),
        ([*run_, "--model", model, "--temporal", "ema", "--temporal-cut-difference", "300"],
         ["--temporal-cut-difference"]),
        # a setting of the stabiliser without one would be ignored, the masks as they were
        ([*run_, "--model", model, "--temporal-frames", "5"], ["--temporal-frames", "add --temporal hysteresis or ema"]),
        ([*run_, "--model", model, "--temporal", "none", "--temporal-cut", "0.5"], ["--temporal-cut", "is off"]),
    ]
    for argv, words in cases:
        code, stderr = gst_tests.in_process(capsys, *argv)
        gst_tests._one_line_error(subprocess.CompletedProcess(argv, code, "", stderr), *words)
        assert code == 2, (argv, code, stderr)


def test_flicker_command_scores_the_models_own_predictions(tiny_graphs: dict[str, Path], tmp_path: Path) -> None:
    """The "none" row recounted here from the model's labels on the same drive; every stabiliser reported."""
    import json

    from benchmarks.cli import main as bench_main
    from runtime.segmenter import Segmenter
    from train.data.synth import night_drive
    from train.metrics import ConfusionMeter

    model = tiny_graphs["portable"]
    assert bench_main(["flicker", "--model", str(model), "--scenes", "2", "--frames-per-scene", "3", "--size", "96x160",
                       "--seed", "5", "--cost-size", "48x80", "--json", str(tmp_path / "f.json")]) == 0
    table = json.loads((tmp_path / "f.json").read_text())["stabilisers"]
    assert set(table) == {"none", "hysteresis k=3", "ema 1/3"}  # no confidence output: no confidence row
    seg, changed, counted, confusion = Segmenter(model), 0, 0, ConfusionMeter()
    clip = list(night_drive(2, 3, (96, 160), seed=5))
    predicted = [seg.process(frame) for frame, _ in clip]
    for t in range(len(clip)):
        confusion.update(predicted[t], clip[t][1])
        if t % 3:  # frames 3 starts the second scene: the pair (2, 3) is left out
            truth_before, truth = clip[t - 1][1], clip[t][1]
            stable = (truth == truth_before) & (truth != 255)
            changed += int((stable & (predicted[t] != predicted[t - 1])).sum())
            counted += int(stable.sum())
    assert table["none"]["flicker"] == pytest.approx(changed / counted)
    assert table["none"]["miou"] == pytest.approx(confusion.miou)
    assert all(row["cost_ms"]["48x80"] > 0 for name, row in table.items() if name != "none")
