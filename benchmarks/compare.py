"""``dannet-bench compare``: the DANNet reference loop and our exported graph, same model, same frames, one run.

(a) ``benchmarks.reference_loop`` (PyTorch eager fp32, full-resolution upsampling of all logits,
NumPy argmax) and (b) the exported ONNX graph (frame -> labels, tail in-graph) in ONNX Runtime.
Prints per-path latency and the speed-up, checks that the labels agree, and writes a JSON table and
a bar chart. Frames are generated night street scenes at the output resolution, resized to the
network input (as the reference resizes 1920x1080 frames to 960x540).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image


def night_frames(count: int, size: tuple[int, int], out_size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    from train.data.synth.render import Camera, render
    from train.data.synth.scene import sample_dynamic, sample_static

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        scene = sample_static(rng, out_size[1] / out_size[0])
        image, _ = render(scene, sample_dynamic(rng, scene), out_size, rng, night=True, camera=Camera())
        frames.append(np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR)))
    return frames


def stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "min_ms": float(ms.min()),
            "max_ms": float(ms.max())}


def main(argv: list[str] | None = None) -> None:
    import onnxruntime as ort
    import torch

    from export import read_metadata
    from export.cli import size_hw
    from runtime.classes import class_weights
    from train.evaluate import load_networks

    from .reference_loop import reference_labels

    parser = argparse.ArgumentParser(prog="dannet-bench compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="exported graph (dannet-export onnx, portable tail)")
    parser.add_argument("--checkpoint", required=True, help="the checkpoint the graph was exported from")
    parser.add_argument("--light", help="relighting weights when the checkpoint has none")
    parser.add_argument("--arch", help="architecture when the file does not say")
    parser.add_argument("--backbone", help="backbone when the file does not say")
    parser.add_argument("--input-size", type=size_hw, required=True, help="network input HxW")
    parser.add_argument("--output-size", type=size_hw, required=True, help="label map HxW")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for both paths (0: library default)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a bar chart (PNG) here")
    args = parser.parse_args(argv)

    meta = read_metadata(args.model)
    if meta.get("dannet.tail") != "portable":
        raise SystemExit(f"dannet-bench compare: {args.model}: needs a portable-tail graph (ONNX Runtime cannot run "
                         "the TensorRT plugin node)")
    if args.threads:
        torch.set_num_threads(args.threads)
    segmenter, relight, arch, backbone = load_networks(args.checkpoint, args.light, args.arch, args.backbone)
    weights = class_weights(float(meta["dannet.weights_std"]))
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    providers = [p for p in ort.get_available_providers() if p != "AzureExecutionProvider"]  # not a compute device
    session = ort.InferenceSession(args.model, options, providers=providers)
    frames = night_frames(args.frames + args.warmup, args.input_size, args.output_size)
    reference_stages: dict[str, list[float]] = {}
    times: dict[str, list[float]] = {"reference": [], "ours": []}
    agree = []
    for i, frame in enumerate(frames):
        t = time.perf_counter()
        expected = reference_labels(segmenter, relight, frame, weights, args.output_size,
                                    reference_stages if i >= args.warmup else None)
        t1 = time.perf_counter()
        labels = session.run(None, {"frame": frame[None]})[0][0]
        t2 = time.perf_counter()
        if i >= args.warmup:
            times["reference"].append(t1 - t)
            times["ours"].append(t2 - t1)
            agree.append(float((labels == expected).mean()))
    result = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "model": str(args.model), "arch": arch, "backbone": backbone, "precision": meta.get("dannet.precision"),
        "input_size": list(args.input_size), "output_size": list(args.output_size), "frames": args.frames,
        "onnxruntime": ort.__version__, "providers": session.get_providers(), "torch": torch.__version__,
        "reference": stats(times["reference"]), "ours": stats(times["ours"]),
        "reference_stages_p50_ms": {k: float(np.median(v) * 1e3) for k, v in reference_stages.items()},
        "speedup_p50": float(np.median(times["reference"]) / np.median(times["ours"])),
        "identical_pixels": float(np.mean(agree)),
    }
    print(f"{arch} ({backbone}), {args.input_size[0]}x{args.input_size[1]} -> {args.output_size[0]}x"
          f"{args.output_size[1]}, {args.frames} frames, {result['machine']}")
    print(f"{'path':<44} {'p50 ms':>9} {'p90 ms':>9}")
    print(f"{'reference loop (PyTorch eager + NumPy argmax)':<44} {result['reference']['p50_ms']:>9.1f} "
          f"{result['reference']['p90_ms']:>9.1f}")
    print(f"{'ours (ONNX Runtime, ' + ','.join(p.replace('ExecutionProvider', '') for p in session.get_providers()) + ')':<44} "
          f"{result['ours']['p50_ms']:>9.1f} {result['ours']['p90_ms']:>9.1f}")
    print(f"speed-up {result['speedup_p50']:.2f}x; identical labels {100 * result['identical_pixels']:.3f}%; "
          "reference stages p50: " + ", ".join(f"{k} {v:.1f} ms" for k, v in result["reference_stages_p50_ms"].items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.plot:
        plot(result, Path(args.plot))


def plot(result: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("dannet-bench compare --plot: needs matplotlib (pip install matplotlib)") from None
    stages = result["reference_stages_p50_ms"]
    fig, ax = plt.subplots(figsize=(7, 3))
    left = 0.0
    for (name, ms), color in zip(stages.items(), ("tab:blue", "tab:orange", "tab:red")):
        ax.barh("reference loop", ms, left=left, color=color, label=f"reference: {name}")
        left += ms
    ax.barh("ours (ONNX Runtime)", result["ours"]["p50_ms"], color="tab:green", label="ours: whole graph")
    ax.set_xlabel("median latency per frame (ms)")
    ax.set_title(f"{result['arch']} {result['input_size'][0]}x{result['input_size'][1]} -> "
                 f"{result['output_size'][0]}x{result['output_size'][1]}: {result['speedup_p50']:.2f}x")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
