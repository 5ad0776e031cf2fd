"""The demo behind ``make demo``: DANNet Edge end to end on a CPU, in a few minutes, and DANNet's gain.

1. generate Cityscapes-style day data and Dark Zurich-style day/night pairs (scenes the validation
   sets never share);
2. train a PSPNet with an EfficientNet-Lite0 backbone from ImageNet weights on the labelled day data,
   then, side by side (one thread each), DANNet adaptation (relighting net, discriminators, unlabelled
   night) and a source-only run that trains on with the day labels only, for steps that take about the
   same time on 2 cores, so that the difference between the two is DANNet's and not more training. The
   budget is steps, so any machine fast enough trains as much; minutes cap each stage on a slower one
   (cached: a second run reuses all of it);
3. evaluate both on generated night val and day val: mIoU, and a picture (night | source-only |
   DANNet | ground truth);
4. export DANNet as one ONNX graph (uint8 camera frame in, labels and per-pixel confidence out), time it
   in ONNX Runtime, and check on night val that its confidence predicts its errors (a reliability
   diagram, and a picture: night | DANNet | confidence | the overlay darkened where it is unsure);
5. render a synthetic night drive as an H.264 video and run ``dannet-run`` on it (GStreamer in and out):
   an overlay video, a confidence video, and a summary with frames per second and per-stage latency.

Everything lands in ``demo-output/``; ``summary.json`` holds the figures.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from runtime.atomic import atomic_file, atomic_write

OUT = Path("demo-output")
SIZE = (128, 256)
#: day images (and as many day/night pairs) to train on; the val sets hold a quarter as many, other scenes. The day
#: model's 440 steps of 8 images see each of 300 about 12 times; 300 instead of 120 (14 s to generate) took DANNet's
#: night from 17.3% to 22.3% and source-only's from 11.0% to 15.3% (val sets of 30 and 75 images; BENCHMARKS.md)
COUNT = 300
BACKBONE = "efficientnet_lite0"
#: the training budget in steps: day-only training from ImageNet (both cores), then side by side (one core each)
#: DANNet and source-only. About what the 2-core build machine trained in 4.25 + 2.25 minutes in the quiet runs of
#: 2026-12-01 (394 and 441 / 72 and 81 / 119 and 138), where the two side-by-side runs' steps took the same time
#: (on 12-02's faster VM: 102 s for DANNet's, 115 s for source-only's). Steps, not minutes, keep the figures from
#: following the machine's speed: with minutes as the budget, that VM trained 684 / 121 / 182 steps and DANNet's
#: gain fell from +6.6..+8.0 to +4.4 points (the extra pre-training lifted source-only most); with these steps it
#: is +7.5, bit for bit again (run.seed=0; seeds 1-3 gave -1.7, +6.9, +1.5). Both stages limit the night: a
#: longer day model (2.5 -> 4.5 min: DANNet's night 9.0% -> 12.4%) and, with the early stages frozen, longer
#: adaptation (1.5 / 2.5 / 3 min: 17.0 / 19.7 / 18.8%, source-only 12.7 / 12.8 / 12.1%; BENCHMARKS.md)
PRETRAIN_STEPS, DANNET_STEPS, SOURCE_ONLY_STEPS = 440, 80, 140
#: minutes that end a stage first on a machine too slow for its steps (each run stops at whichever comes first), so
#: that the training takes at most 16.5 minutes. 11-18% above what the second build machine of 12-03 needed (AMD
#: EPYC, half the first's speed: 1.3 s a pre-training step; side by side 3.5 s a DANNet step, 2.1 s a source-only
#: one), so that a machine up to about that slow trains the same steps: under the earlier caps of 5.25 + 3 (10% above
#: the first machine's need) it stopped at 231 / 54 / 88 steps and DANNet's night came out below source-only's
#: (11.8% against 13.0%)
PRETRAIN_MIN, ADAPT_MIN = 11.0, 5.5
#: AdamW learning rates: from ImageNet weights, then from the day model (both side-by-side runs, each with
#: a fresh optimiser state; measured at 2e-4 / 5e-4 / 1e-3 for both: DANNet's night rises to ~7.5% from 2e-4's
#: 6.4% while source-only stays 4-5% at 5e-4 and falls to 2.7% at 1e-3; BENCHMARKS.md)
PRETRAIN_LR, ADAPT_LR = 1e-3, 5e-4
#: source images are scaled by this range before the 96x96 crop: at 128x256, half scale leaves a 64-pixel
#: high image padded with ignored pixels (measured: 10.4% day mIoU vs 8.7% for [0.5, 1.0], 3 min; BENCHMARKS.md)
SOURCE_SCALE = "[0.75, 1.25]"
#: day-label jobs (pre-training and source-only) take batches of 8 (4x the pixels per step for about 2.5x
#: the time); DANNet keeps the preset's 2, since each of its steps trains three images and two discriminators
LABELLED_BATCH = 8
#: the class weights' proportions (paper eq. 1) are counted on the generated day labels: the paper's are
#: Cityscapes', where buses and trains are rare (0.2% of the pixels, weight 1.14 at test time) and road common
#: (37%, 0.69); the generator's streets have them at 4% and 10%, and with Cityscapes' weights the demo's day
#: model called every dark region a bus or a train (measured: day val 20.3% -> 26.0%, DANNet's night 7.4% ->
#: 9.0% with the same networks; BENCHMARKS.md)
CLASS_PROPORTIONS = "measured"
#: every job keeps the backbone's stem, layer1 and layer2 as ImageNet left them (weights and BatchNorm statistics):
#: fine-tuned on day images, they learn the day's look and the day model's gains barely reach the night (measured,
#: 2 min of pre-training, 3 seeds: night 4.4-4.8% fine-tuned whole, 9.3-13.1% with these frozen; BENCHMARKS.md)
FROZEN_STAGES = 2
#: the paper's PSPNet trained on Cityscapes: 12.3% mIoU on Dark Zurich val against 63.4% on Cityscapes val
DARK_ZURICH_NIGHT_DAY = 12.3 / 63.4
CLIP_SCENES, CLIP_FRAMES_PER_SCENE, CLIP_RATE = 4, 25, 10
GRID_ROWS = 4


def start_over_if_settings_changed() -> None:
    """Reuse is per settings: a demo-output/ from other settings (another backbone, size or budget)
    would mix checkpoints that do not belong together, so its training runs and results are removed."""
    import shutil

    settings = {"backbone": BACKBONE, "size": list(SIZE), "count": COUNT, "minutes": [PRETRAIN_MIN, ADAPT_MIN],
                "steps": [PRETRAIN_STEPS, DANNET_STEPS, SOURCE_ONLY_STEPS],
                "lr": [PRETRAIN_LR, ADAPT_LR], "scale": SOURCE_SCALE, "batch": LABELLED_BATCH,
                "class_proportions": CLASS_PROPORTIONS, "frozen_stages": FROZEN_STAGES}
    recorded = OUT / "settings.json"
    if OUT.is_dir() and (not recorded.is_file() or json.loads(recorded.read_text()) != settings):
        print(f"   {OUT}/ holds a demo run with other settings: starting over")
        for name in ("synth", "pretrain", "dannet", "source_only", "dannet.onnx", "summary.json", "run_stats.jsonl"):
            path = OUT / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    OUT.mkdir(exist_ok=True)
    atomic_write(recorded, json.dumps(settings) + "\n")


def step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def training_args(data: Path) -> list[str]:
    """What every job shares: the CPU preset, the edge backbone, AdamW (minutes from ImageNet weights
    go much further with it than with the released code's SGD), the generated data, no periodic validation."""
    values = {"model.backbone": BACKBONE, "model.frozen_stages": FROZEN_STAGES, "optim.optimizer": "adamw",
              "pretrain.lr": PRETRAIN_LR, "optim.lr": ADAPT_LR,
              "data.source.root": data / "cityscapes", "data.source.scale": SOURCE_SCALE,
              "data.source.class_proportions": CLASS_PROPORTIONS,
              "data.target.root": data / "darkzurich", "run.val_every": 0, "run.checkpoint_every": 100}
    return ["--config", "synthetic-cpu", *(a for k, v in values.items() for a in ("--set", f"{k}={v}"))]


def training_runs(data: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The ``dannet-train`` arguments of the day model's pre-training (with its steps and minutes), and of the two
    side-by-side runs that start from it (with their steps; ``train_side_by_side`` adds their minutes)."""
    common = training_args(data)
    labelled = ["--set", f"optim.batch_size={LABELLED_BATCH}"]
    pretrain = ["pretrain", *common, *labelled, "--init", "imagenet", "--set", f"pretrain.iterations={PRETRAIN_STEPS}",
                "--set", f"run.time_limit_min={PRETRAIN_MIN}"]
    init = ["--init", str(OUT / "pretrain" / "final.pth")]
    return pretrain, {"dannet": ["adapt", *common, *init, "--set", f"optim.iterations={DANNET_STEPS}"],
                      "source_only": ["pretrain", *common, *labelled, *init, "--set", f"pretrain.lr={ADAPT_LR}",
                                      "--set", f"pretrain.iterations={SOURCE_ONLY_STEPS}"]}


def resume_flag(out: Path) -> list[str]:
    """``--resume`` where an interrupted run left a checkpoint; a run killed before its first one starts over."""
    from train.engine import latest_checkpoint

    if latest_checkpoint(out) is not None:
        return ["--resume"]
    for leftover in ("config.yaml", "metrics.jsonl"):  # what a run writes before its first checkpoint
        (out / leftover).unlink(missing_ok=True)
    return []


def train_in_process(name: str, argv: list[str]) -> None:
    from train.cli import main as train_main

    out = OUT / name
    if (out / "final.pth").is_file():
        print(f"   reusing {out / 'final.pth'}")
        return
    code = train_main([*argv, "--out", str(out), *resume_flag(out)])
    if code != 0:
        raise SystemExit(code)


def train_side_by_side(runs: dict[str, list[str]], minutes: float) -> None:
    """Train ``runs`` at once, one process and one thread each (on a busy 2-core machine one thread per
    process was measured 4x faster than two), each until its iterations or ``minutes`` of training time,
    whichever comes first; logs in OUT/<name>/."""
    from tqdm import tqdm

    todo = {name: argv for name, argv in runs.items() if not (OUT / name / "final.pth").is_file()}
    for name in runs.keys() - todo.keys():
        print(f"   reusing {OUT / name / 'final.pth'}")
    if not todo:
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = {}
    for name, argv in todo.items():
        out = OUT / name
        resume = resume_flag(out)
        out.mkdir(parents=True, exist_ok=True)
        log = open(out / "train.log", "a")
        procs[name] = (subprocess.Popen([sys.executable, "-m", "train.cli", *argv, "--set",
                                         f"run.time_limit_min={minutes}", "--out", str(out), *resume],
                                        stdout=log, stderr=subprocess.STDOUT, env=env), log)
    started = time.monotonic()
    with tqdm(total=round(60 * minutes), desc=f"   {' + '.join(todo)}", unit="s",
              bar_format="{desc}: {bar} {n_fmt} s (training capped at {total_fmt} s)") as bar:
        while any(p.poll() is None for p, _ in procs.values()):
            time.sleep(1)
            bar.update(min(bar.total, round(time.monotonic() - started)) - bar.n)
    for name, (proc, log) in procs.items():
        log.close()
        if proc.returncode != 0:
            tail = (OUT / name / "train.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise SystemExit(f"demo: training {name} failed ({OUT / name / 'train.log'}): {' '.join(tail)}")


def evaluate_checkpoints(data: Path, names: list[str]) -> tuple[dict[str, dict[str, float]], np.ndarray, int]:
    """mIoU of each checkpoint on night val and day val (PyTorch, test-time re-weighting), the
    picture (rows of night frame | each checkpoint's labels | ground truth) and the night val size."""
    import torch

    from runtime.classes import colorize
    from train.checkpoint import load_checkpoint
    from train.data import EvalTransform, build_dataset
    from train.evaluate import evaluate, networks_of, predict
    from train.factory import test_weights

    night = build_dataset("synthetic", data, transform=EvalTransform(scale=1.0))
    day = build_dataset("cityscapes", data / "cityscapes", transform=EvalTransform(scale=1.0))
    scores, columns = {}, []
    for name in names:
        ckpt = load_checkpoint(OUT / name / "final.pth")
        segmenter, light, _, _ = networks_of(ckpt)
        weights = test_weights(ckpt.config, torch.device("cpu"))  # the run's: its proportions, its std, its mode
        reweight = ckpt.config["eval"]["reweight"]
        scores[name] = {"night": 100 * evaluate(segmenter, light, night, weights, reweight, progress=False).miou,
                        "day": 100 * evaluate(segmenter, light, day, weights, reweight, progress=False).miou}
        with torch.no_grad():
            columns.append([colorize(predict(segmenter, light, night[i]["image"][None], SIZE, weights,
                                             reweight)[0].numpy()) for i in range(GRID_ROWS)])
    samples = night.samples[:GRID_ROWS]
    frames = [np.asarray(Image.open(s.image).convert("RGB")) for s in samples]
    truth = [colorize(np.asarray(Image.open(s.label))) for s in samples]
    grid = np.concatenate([np.concatenate([frames[i], *(c[i] for c in columns), truth[i]], axis=1)
                           for i in range(GRID_ROWS)], axis=0)
    return scores, grid, len(night)


def confidence_on_night_val(segmenter, data: Path) -> tuple[dict[str, float], np.ndarray]:
    """Through the exported graph on every night val image: the reliability figures (``dannet-bench
    reliability``'s, the diagram written to OUT), and the picture night | DANNet | confidence | overlay
    darkened by confidence for the first GRID_ROWS images."""
    from benchmarks.reliability import LEVELS, Reliability, count, plot
    from train.data import dataset_samples
    from train.data.datasets import load_image, load_label

    right, wrong = np.zeros(LEVELS, np.int64), np.zeros(LEVELS, np.int64)
    rows = []
    for i, sample in enumerate(dataset_samples("synthetic", data)):
        image = load_image(sample.image)
        frame = np.asarray(image)
        labels, levels = segmenter.process(frame)
        r, w = count(levels, labels, load_label(sample, image.size))
        right, wrong = right + r, wrong + w
        if i < GRID_ROWS:
            rows.append(np.concatenate([frame, segmenter.overlay(frame, labels, mode="overlay"),
                                        segmenter.overlay(frame, labels, mode="confidence", confidence=levels),
                                        segmenter.overlay(frame, labels, mode="overlay-confidence",
                                                          confidence=levels)], axis=1))
    result = Reliability(right, wrong)
    plot(result, 10, "DANNet (demo) on generated night val", str(OUT / "reliability.png"))
    low = result.least_confident(0.1)
    figures = {"error_rate": result.error_rate, "ece": result.expected_calibration_error(10),
               "auroc": result.auroc(), "least_confident_share": low["share"],
               "least_confident_error_rate": low["error_rate"], "rest_error_rate": low["error_rate_rest"]}
    return figures, np.concatenate(rows, axis=0)


def main(argv: list[str] | None = None) -> None:
    import argparse

    from export import ExportSpec, read_metadata, to_onnx
    from runtime.errors import Parser
    from runtime.segmenter import Segmenter
    from train.data.synth import generate

    # no options: the demo is one fixed run (`make demo`); --help says what it does before minutes of training start
    Parser(prog="python -m benchmarks.demo", description=__doc__,
           formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    started = time.perf_counter()
    data = OUT / "synth"
    t = step("1/5 synthetic data")
    start_over_if_settings_changed()
    for layout in ("cityscapes", "darkzurich"):
        if not (data / layout).is_dir():
            generate(data / layout, layout, count=COUNT, size=SIZE, seed=0)
    print(f"   {data}: day images, day/night pairs, labelled day and night val ({time.perf_counter() - t:.0f} s)")

    pretrain, side_by_side = training_runs(data)
    t = step(f"2/5 training: PSPNet-{BACKBONE} from ImageNet on day labels, {PRETRAIN_STEPS} steps "
             f"(at most {PRETRAIN_MIN:g} min; cached)")
    train_in_process("pretrain", pretrain)
    print(f"   then side by side, at most {ADAPT_MIN:g} min each: DANNet adaptation, {DANNET_STEPS} steps | "
          f"source-only (day labels only), {SOURCE_ONLY_STEPS} steps")
    train_side_by_side(side_by_side, ADAPT_MIN)
    print(f"   ({time.perf_counter() - t:.0f} s)")

    step("3/5 night val and day val: source-only vs DANNet")
    steps = steps_trained()
    scores, grid, night_images = evaluate_checkpoints(data, ["source_only", "dannet"])
    with atomic_file(OUT / "night_grid.png") as f:  # a picture the user keeps: replaced whole or not at all
        Image.fromarray(grid).save(f, format="PNG")
    for name, s in scores.items():
        print(f"   {name:<12} night mIoU {s['night']:5.1f}%   day mIoU {s['day']:5.1f}%")
    print(f"   picture: {OUT / 'night_grid.png'} (night | source-only | DANNet | ground truth)")

    step("4/5 export: frame -> labels + confidence ONNX graph, ONNX Runtime")
    onnx_path = OUT / "dannet.onnx"
    if not onnx_path.is_file() or "confidence" not in json.loads(read_metadata(onnx_path)["dannet.output"]):
        to_onnx(OUT / "dannet" / "final.pth", onnx_path, ExportSpec(input_size=SIZE, output_size=SIZE,
                                                                    confidence=True),
                say=lambda s: print(f"   {s}"))
    segmenter = Segmenter(onnx_path)
    frame = np.asarray(Image.open(sorted((data / "darkzurich" / "rgb_anon" / "val").rglob("*.png"))[0]).convert("RGB"))
    seconds = []
    for _ in range(20):
        tick = time.perf_counter()
        segmenter.process(frame)
        seconds.append(time.perf_counter() - tick)
    print(f"   {1 / np.median(seconds):.1f} frames/s (median {1e3 * np.median(seconds):.0f} ms, ONNX Runtime CPU)")
    reliability, picture = confidence_on_night_val(segmenter, data)
    with atomic_file(OUT / "night_confidence.png") as f:
        Image.fromarray(picture).save(f, format="PNG")
    print(f"   confidence on night val: the least confident {100 * reliability['least_confident_share']:.0f}% of "
          f"pixels are wrong {100 * reliability['least_confident_error_rate']:.0f}% of the time, the rest "
          f"{100 * reliability['rest_error_rate']:.0f}% (AUROC {reliability['auroc']:.2f}, calibration error "
          f"{100 * reliability['ece']:.0f}%)")
    print(f"   pictures: {OUT / 'night_confidence.png'} (night | DANNet | confidence | darkened where unsure), "
          f"{OUT / 'reliability.png'}")

    step("5/5 dannet-run on a synthetic night drive (GStreamer: H.264 in, overlay H.264 out)")
    clip = OUT / "night_drive.mp4"
    if not clip.is_file():
        write_clip(clip)
    stats = OUT / "run_stats.jsonl"
    command = [sys.executable, "-m", "runtime.cli", "--model", str(onnx_path), "--input", str(clip),
               "--output", str(OUT / "night_drive_overlay.mp4"), "--visualize", "both", "--legend",
               "--confidence-out", str(OUT / "night_drive_confidence.mp4"),
               "--stats-interval", "2", "--stats-json", str(stats)]
    print("   $ dannet-run " + " ".join(command[3:]), flush=True)
    if subprocess.run(command).returncode != 0:
        raise SystemExit("demo: dannet-run failed (its message is above)")
    run = json.loads(stats.read_text().splitlines()[-1])
    summary = {"miou_night_val": {name: round(s["night"], 2) for name, s in scores.items()},
               "miou_day_val": {name: round(s["day"], 2) for name, s in scores.items()},
               "night_day_ratio_source_only": night_day_ratio(scores["source_only"]),
               "night_val_images": night_images, "backbone": BACKBONE,
               "training_steps": steps,
               "training_min_at_most": {"pretrain_from_imagenet": PRETRAIN_MIN, "dannet": ADAPT_MIN,
                                        "source_only": ADAPT_MIN},
               "onnxruntime_ms_median": round(1e3 * float(np.median(seconds)), 2),
               "confidence_night_val": {k: round(v, 4) for k, v in reliability.items()},
               "run": {k: run[k] for k in ("captured", "written", "dropped", "elapsed_s", "fps_out")},
               "latency_ms": {stage: {k: v for k, v in s.items() if k != "count"}
                              for stage, s in run["stages"].items()},
               "backend": "onnxruntime (CPU)", "input_size": list(SIZE)}
    atomic_write(OUT / "summary.json", json.dumps(summary, indent=2) + "\n")
    gain = scores["dannet"]["night"] - scores["source_only"]["night"]
    print(f"\n== summary ({OUT / 'summary.json'})")
    source, dannet = scores["source_only"], scores["dannet"]
    print(f"   night val mIoU: source-only {source['night']:.1f}%, DANNet {dannet['night']:.1f}% ({gain:+.1f} points; "
          f"{steps['source_only']} and {steps['dannet']} steps, about the same minutes on 2 cores); "
          f"day val: {source['day']:.1f}% / {dannet['day']:.1f}%")
    if shortfall := steps_short_of_budget(steps):
        print(f"   {shortfall}")
    if summary["night_day_ratio_source_only"] is not None:
        print(f"   the generated night for a day-trained model: {summary['night_day_ratio_source_only']:.2f}x its day "
              f"mIoU (real Dark Zurich vs Cityscapes for the paper's PSPNet: {DARK_ZURICH_NIGHT_DAY:.2f}x)")
    print(f"   dannet-run: {run['written']} frames at {run['fps_out']:.1f} frames/s end to end, "
          f"{run['dropped']} dropped")
    for stage, s in summary["latency_ms"].items():
        print(f"   {stage:<12} p50 {s['p50_ms']:7.1f} ms   p90 {s['p90_ms']:7.1f} ms")
    print(f"   pictures: {OUT / 'night_grid.png'}, {OUT / 'night_confidence.png'}, {OUT / 'reliability.png'}; "
          f"videos: {clip} -> {OUT / 'night_drive_overlay.mp4'}, {OUT / 'night_drive_confidence.mp4'}")
    print(f"\ndone in {time.perf_counter() - started:.0f} s; everything is in {OUT}/")


def steps_trained() -> dict[str, int]:
    """The steps each training run took: the demo's own, or fewer where a slow machine reached the minutes first."""
    from train.checkpoint import load_checkpoint

    return {key: load_checkpoint(OUT / name / "final.pth").iteration
            for key, name in (("pretrain_from_imagenet", "pretrain"), ("dannet", "dannet"),
                              ("source_only", "source_only"))}


def steps_short_of_budget(steps: dict[str, int]) -> str | None:
    """What to tell a user whose machine reached the minutes before the steps (None where it did not): the
    figures then come from less training than BENCHMARKS.md's."""
    budget = {"pretrain_from_imagenet": PRETRAIN_STEPS, "dannet": DANNET_STEPS, "source_only": SOURCE_ONLY_STEPS}
    if steps == budget:
        return None
    return (f"this machine reached the minutes first: {' / '.join(str(steps[k]) for k in budget)} steps of the "
            f"demo's {' / '.join(map(str, budget.values()))} (pre-training / DANNet / source-only), so these "
            f"figures can fall short of BENCHMARKS.md's")


def night_day_ratio(score: dict[str, float]) -> float | None:
    """Night mIoU over day mIoU: how much harder the generated night is for a day-trained model (None for a model
    that learnt nothing by day, where the ratio says nothing)."""
    return round(score["night"] / score["day"], 3) if score["day"] > 0 else None


def write_clip(path: Path) -> None:
    """The synthetic night drive as H.264, through the runtime's own GStreamer output."""
    from tqdm import tqdm

    from runtime.sinks import open_sink
    from runtime.sources import Frame
    from runtime.uris import parse_output
    from train.data.synth import night_drive

    sink, count = open_sink(parse_output(str(path))), CLIP_SCENES * CLIP_FRAMES_PER_SCENE
    sink.start(SIZE[1], SIZE[0], Fraction(CLIP_RATE))
    frames = night_drive(CLIP_SCENES, CLIP_FRAMES_PER_SCENE, SIZE, seed=1)
    for i, (image, _) in enumerate(tqdm(frames, total=count, desc="   rendering", unit="frame")):
        sink.write(image, Frame(image, i, 0.0, 0.0), i / CLIP_RATE)
    sink.close()
    print(f"   {path}: {count} frames at {CLIP_RATE} frames/s")


if __name__ == "__main__":
    main()
