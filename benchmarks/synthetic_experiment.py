"""The synthetic DANNet experiment (CPU): does adaptation help where day and night really differ?

1. generate Cityscapes-style (overcast day, labelled) and Dark Zurich-style (sunny day / night
   pairs, labelled night val) data;
2. pre-train PSPNet-ResNet18 on the day data alone: the source-only baseline;
3. adapt from it with full DANNet, without the static loss, and without the relighting net;
4. evaluate every model on the generated night val, and full DANNet also without test-time
   re-weighting (all class weights 1), and the source-only model on the day val (the gap).

Finished steps are reused, so an interrupted experiment continues. Prints a markdown table and
writes ``results.json`` to ``--out``.

    python -m benchmarks.synthetic_experiment --out runs/synthetic
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from runtime.arguments import integer, size_hw
from runtime.atomic import atomic_write
from runtime.errors import Parser, debug_requested, run_command
from train.checkpoint import load_checkpoint
from train.cli import main as train_main
from train.data import EvalTransform, build_dataset
from train.data.synth import check_size, generate
from train.evaluate import evaluate, networks_of, recorded_reweighting
from train.factory import class_weights_of

PROG = "python -m benchmarks.synthetic_experiment"


def run_step(out: Path, name: str, argv: list[str]) -> float:
    """Run a dannet-train job unless its final checkpoint exists; returns the minutes it took."""
    if (out / name / "final.pth").is_file():
        return 0.0
    start = time.perf_counter()
    code = train_main([*argv, "--out", str(out / name)] + (["--resume"] if (out / name / "checkpoints").is_dir() else []))
    if code != 0:
        raise SystemExit(f"{name}: dannet-train exited with {code}")
    return (time.perf_counter() - start) / 60


def miou(checkpoint: Path, dataset, std: float) -> float:
    """Night-val mIoU in percent; ``std`` 0 means no test-time re-weighting (all weights 1)."""
    ckpt = load_checkpoint(checkpoint)
    segmenter, light, _, _ = networks_of(ckpt)
    weights = torch.from_numpy(class_weights_of(ckpt.config, std))  # std 0 gives all weights 1: no re-weighting
    _, reweight = recorded_reweighting(ckpt)  # as the run validated
    return 100 * evaluate(segmenter, light, dataset, weights, reweight, "cpu", progress=False).miou


def main(argv: list[str] | None = None) -> None:
    parser = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/synthetic", help="experiment folder (default runs/synthetic)")
    parser.add_argument("--count", type=integer(1), default=200, help="training images / pairs (default 200)")
    parser.add_argument("--size", type=size_hw, default=(128, 256), help="generated images, HxW (default 128x256)")
    parser.add_argument("--pretrain-iterations", type=integer(1), default=600, help="source-only steps (default 600)")
    parser.add_argument("--adapt-iterations", type=integer(1), default=200, help="steps of each DANNet variant "
                                                                                 "(default 200)")
    parser.add_argument("--seed", type=integer(0), default=0, help="data and training seed (default 0)")
    args = parser.parse_args(argv)
    check_size(args.size)
    out, data = Path(args.out), Path(args.out) / "data"
    h, w = args.size
    for layout in ("cityscapes", "darkzurich"):
        if not (data / layout).is_dir():
            generate(data / layout, layout, args.count, (h, w), args.seed)
    common = ["--config", "synthetic-cpu", "--set", f"run.seed={args.seed}",
              "--set", f"data.source.root={data / 'cityscapes'}", "--set", f"data.target.root={data / 'darkzurich'}",
              "--set", f"data.val.root={data}", "--set", f"pretrain.val_root={data}"]
    minutes = {"source-only": run_step(out, "source-only", ["pretrain", *common, "--set",
                                                             f"pretrain.iterations={args.pretrain_iterations}"])}
    init = ["--init", str(out / "source-only" / "final.pth"), "--set", f"optim.iterations={args.adapt_iterations}"]
    variants = {"DANNet": [], "DANNet w/o static loss": ["--set", "loss.static=0"],
                "DANNet w/o relighting net": ["--set", "model.relight=false"]}
    for name, extra in variants.items():
        minutes[name] = run_step(out, name.replace(" ", "_").replace("/", ""), ["adapt", *common, *init, *extra])

    night = build_dataset("synthetic", data, transform=EvalTransform(scale=1.0))
    day = build_dataset("cityscapes", data / "cityscapes", transform=EvalTransform(scale=1.0))
    rows = [("source-only (day val)", out / "source-only" / "final.pth", day, 0.16),
            ("source-only", out / "source-only" / "final.pth", night, 0.16)]
    rows += [(name, out / name.replace(" ", "_").replace("/", "") / "final.pth", night, 0.16) for name in variants]
    rows.append(("DANNet w/o test-time re-weighting", out / "DANNet" / "final.pth", night, 0.0))
    results = {name: miou(path, ds, std) for name, path, ds, std in rows}
    print(f"\n| model | mIoU % (night val, {len(night)} images) |\n| --- | --- |")
    for name, value in results.items():
        print(f"| {name} | {value:.2f} |")
    print("training minutes: " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items() if v))
    atomic_write(out / "results.json", json.dumps({"miou": results, "minutes": minutes, "args": vars(args),
                                                   "torch": torch.__version__, "numpy": np.__version__}, indent=1))


if __name__ == "__main__":  # one line on stderr and an exit code for what the user can act on, as the commands
    sys.exit(run_command(PROG, main, debug_requested(sys.argv)))
