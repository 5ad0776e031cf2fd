"""The demo behind ``make demo``: runs every part of DANNet Edge that exists so far, on CPU.

Generates (or reuses) a small synthetic Cityscapes / Dark Zurich set, writes a preview of what the
loaders produce, builds the DANNet networks the released checkpoints fit, runs a night-sized frame
through them and reports parameter counts, output strides and CPU time.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from train.data import DarkZurichPairs, EvalTransform, PairTransform, build_dataset
from train.data.preview import preview_grid
from train.data.synth import PAIRS_CSV, generate

OUT = Path("demo-output")

from runtime.classes import CLASS_NAMES, TEST_WEIGHTS_STD, class_weights
from train.models import Discriminator, RelightNet, build_segmenter, output_stride


def data() -> None:
    root = OUT / "synth"
    for layout in ("cityscapes", "darkzurich"):
        if not (root / layout).is_dir():
            print(f"generating synthetic {layout} data in {root / layout}")
            generate(root / layout, layout, count=16, size=(256, 512), seed=0)
    torch.manual_seed(0)
    pairs = DarkZurichPairs(root / "darkzurich", root / "darkzurich" / PAIRS_CSV, PairTransform(crop=256, resize_to=None))
    val = build_dataset("synthetic", root, transform=EvalTransform(scale=1.0))
    grid = preview_grid([pairs[i] for i in range(2)] + [val[i] for i in range(2)], OUT / "preview.png")
    print(f"{len(pairs)} day/night pairs, {len(val)} labelled night images; preview: {grid}")


def main() -> None:
    data()
    torch.set_grad_enabled(False)
    frame = torch.randn(1, 3, 540, 960)
    print(f"DANNet Edge demo: networks on a {tuple(frame.shape[-2:])} frame (CPU, {torch.get_num_threads()} threads)")
    relight = RelightNet().eval()
    rows = [("relight", relight, frame)]
    for arch in ("pspnet", "deeplab", "refinenet"):
        rows.append((f"{arch} (resnet101)", build_segmenter(arch).eval(), frame))
    rows.append(("discriminator", Discriminator(len(CLASS_NAMES)), torch.zeros(1, 19, 512, 512)))
    for name, model, x in rows:
        start = time.perf_counter()
        y = model(x)
        ms = (time.perf_counter() - start) * 1e3
        params = sum(p.numel() for p in model.parameters())
        print(f"  {name:<22} {params / 1e6:7.2f} M params  {tuple(x.shape[-2:])} -> {tuple(y.shape[1:])}  {ms:8.0f} ms")
    for arch in ("pspnet", "deeplab", "refinenet"):
        print(f"  {arch} logits at stride {output_stride(arch)}")
    w = class_weights(TEST_WEIGHTS_STD)
    print("test-time class weights (std 0.16): " + ", ".join(f"{n} {v:.3f}" for n, v in zip(CLASS_NAMES, w)))


if __name__ == "__main__":
    main()
