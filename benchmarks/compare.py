"""``dannet-bench compare``: the DANNet reference loop and our exported graph, same model, same frames, one run.

(a) ``benchmarks.reference_loop`` (PyTorch eager fp32, full-resolution upsampling of all logits,
NumPy argmax) and (b) our runtime path: the exported graph (frame -> labels, tail in-graph) through
``runtime.backends`` (ONNX Runtime for ``.onnx``, TensorRT for ``.engine``).
Prints per-path latency and the speed-up, checks that the labels agree, and writes a JSON table and
a bar chart. Frames are generated night street scenes at the output resolution, resized to the
network input (as the reference resizes 1080x1920 frames to 540x960). The graph must have been
exported from --checkpoint (its metadata records the checkpoint's sha256): agreement with another
network's labels would measure nothing.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

from runtime.arguments import integer, size_hw
from runtime.atomic import atomic_write
from runtime.errors import DannetError

from .cli import check_outputs, command_parser


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


def check_provenance(model: str, recorded: str | None, checkpoint: str) -> None:
    """The model must have been exported from ``checkpoint`` (the sha256 its metadata or sidecar records)."""
    from runtime.engine_sidecar import sha256_of

    if not Path(checkpoint).is_file():
        raise DannetError(f"--checkpoint {checkpoint}: no such file")
    if recorded is None:
        raise DannetError(f"{model}: does not record the checkpoint it was exported from; re-export it with "
                          "dannet-export (engines: rebuild them from the new graph)")
    actual = sha256_of(checkpoint)
    if actual != recorded:
        raise DannetError(f"--checkpoint {checkpoint} (sha256 {actual[:12]}...) is not the checkpoint {model} was "
                          f"exported from (sha256 {recorded[:12]}...); expected that checkpoint, or a graph exported "
                          "from this one")


def size_flag(flag: str, given: tuple[int, int] | None, model_size: tuple[int, int] | None,
              model: str) -> tuple[int, int]:
    """A size flag checked against the model's: a static model takes one size, and a graph run at another
    would fail in the backend halfway through (or, for the label map, compare different grids)."""
    if given is None:
        if model_size is None:
            raise DannetError(f"{flag}: {model} takes any frame size; give the one to compare at (HxW)")
        return tuple(model_size)
    if model_size is not None and tuple(given) != tuple(model_size):
        raise DannetError(f"{flag} {given[0]}x{given[1]}: {model} was exported for {model_size[0]}x{model_size[1]} "
                          "(HxW); expected that size, or leave the flag out")
    return given


def main(argv: list[str] | None = None) -> None:
    import torch

    from runtime.backends import open_backend
    from runtime.cli import add_model_arguments
    from runtime.classes import class_weights
    from train.evaluate import load_networks

    from .reference_loop import reference_labels

    parser = command_parser("compare", __doc__)
    add_model_arguments(parser, help="the exported model to compare with the reference loop")
    parser.add_argument("--checkpoint", required=True, help="the checkpoint the graph was exported from")
    parser.add_argument("--light", help="relighting weights when the checkpoint has none")
    parser.add_argument("--arch", help="architecture when the file does not say")
    parser.add_argument("--backbone", help="backbone when the file does not say")
    parser.add_argument("--input-size", type=size_hw, metavar="HxW",
                        help="network input, height first (default: the model's; required for dynamic models)")
    parser.add_argument("--output-size", type=size_hw, metavar="HxW",
                        help="label map, height first (default and only choice: the model's)")
    parser.add_argument("--frames", type=integer(1), default=10, help="timed frames, >= 1 (default 10)")
    parser.add_argument("--warmup", type=integer(0), default=2, help="untimed frames first, >= 0 (default 2)")
    parser.add_argument("--threads", type=integer(0, 1024), default=0,
                        help="CPU threads for both paths (0: library default)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a bar chart (PNG) here")
    args = parser.parse_args(argv)
    check_outputs(args)

    if args.threads:
        torch.set_num_threads(args.threads)
    options = {"threads": args.threads} if args.threads and args.model.endswith(".onnx") else {}
    backend = open_backend(args.model, args.backend, **options)
    info = backend.info
    if info.weights_std is None:  # the reference loop must apply the same class weights
        raise DannetError(f"{args.model}: does not record its class weights std; re-export it with dannet-export")
    check_provenance(args.model, info.checkpoint_sha256, args.checkpoint)
    args.input_size = size_flag("--input-size", args.input_size, info.input_size, args.model)
    args.output_size = size_flag("--output-size", args.output_size, info.output_size, args.model)
    weights = class_weights(info.weights_std)
    segmenter, relight, arch, backbone = load_networks(args.checkpoint, args.light, args.arch, args.backbone)
    frames = night_frames(args.frames + args.warmup, args.input_size, args.output_size)
    reference_stages: dict[str, list[float]] = {}
    times: dict[str, list[float]] = {"reference": [], "ours": []}
    agree = []
    for i, frame in enumerate(frames):
        t = time.perf_counter()
        expected = reference_labels(segmenter, relight, frame, weights, args.output_size,
                                    reference_stages if i >= args.warmup else None)
        t1 = time.perf_counter()
        labels = backend.infer(frame[None])[0]
        t2 = time.perf_counter()
        if i >= args.warmup:
            times["reference"].append(t1 - t)
            times["ours"].append(t2 - t1)
            agree.append(float((labels == expected).mean()))
    result = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "model": str(args.model), "arch": arch, "backbone": backbone,
        "input_size": list(args.input_size), "output_size": list(args.output_size), "frames": args.frames,
        "backend": backend.name, "providers": getattr(backend, "providers", None), "torch": torch.__version__,
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
    print(f"{'ours (' + backend.name + ')':<44} "
          f"{result['ours']['p50_ms']:>9.1f} {result['ours']['p90_ms']:>9.1f}")
    print(f"speed-up {result['speedup_p50']:.2f}x; identical labels {100 * result['identical_pixels']:.3f}%; "
          "reference stages p50: " + ", ".join(f"{k} {v:.1f} ms" for k, v in result["reference_stages_p50_ms"].items()))
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=1))
    if args.plot:
        plot(result, Path(args.plot))


def plot(result: dict, path: Path) -> None:
    from .plotting import pyplot, save

    plt = pyplot("compare")
    stages = result["reference_stages_p50_ms"]
    fig, ax = plt.subplots(figsize=(7, 3))
    left = 0.0
    for (name, ms), color in zip(stages.items(), ("tab:blue", "tab:orange", "tab:red")):
        ax.barh("reference loop", ms, left=left, color=color, label=f"reference: {name}")
        left += ms
    ax.barh(f"ours ({result['backend']})", result["ours"]["p50_ms"], color="tab:green", label="ours: whole graph")
    ax.set_xlabel("median latency per frame (ms)")
    ax.set_title(f"{result['arch']} {result['input_size'][0]}x{result['input_size'][1]} -> "
                 f"{result['output_size'][0]}x{result['output_size'][1]}: {result['speedup_p50']:.2f}x")
    ax.legend(fontsize=7, loc="lower right")
    save(fig, path)


if __name__ == "__main__":
    main()
