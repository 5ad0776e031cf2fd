"""The demo behind ``make demo``: runs every part of DANNet Edge that exists so far, on CPU.

Builds the DANNet networks the released checkpoints fit, runs a night-sized frame through them and
reports parameter counts, output strides and CPU time.
"""
from __future__ import annotations

import time

import torch

from runtime.classes import CLASS_NAMES, TEST_WEIGHTS_STD, class_weights
from train.models import Discriminator, RelightNet, build_segmenter, output_stride


def main() -> None:
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
