"""``dannet-bench compare``: the DANNet reference loop and our exported graphs, same model, same frames, one run.

(a) ``benchmarks.reference_loop`` (PyTorch eager fp32 on the CPU, full-resolution upsampling of all logits,
NumPy argmax) and (b) our runtime path: each exported graph (frame -> labels, tail in-graph) through
``runtime.backends`` (ONNX Runtime for ``.onnx``, TensorRT for ``.engine``): ``--model`` and any
``--also-model`` (e.g. the FP32 graph and its ``dannet-export int8`` graph). Every frame goes through
every path in turn, so a busy machine slows them alike and the speed-ups are ratios within one run.
Prints per-path latency, the speed-up over the reference, the share of labels equal to the reference's
and to the first model's, optionally the night mIoU of every path on a generated dataset
(``--night-root``), and writes a JSON table and a bar chart. Frames are generated night street scenes
at the output resolution, resized to the network input (as the reference resizes 1080x1920 frames to
540x960). Every graph must have been exported from --checkpoint, and for a released segmentation file with the
relighting file --light names (its metadata records both sha256s): agreement with another network's labels
would measure nothing.
"""
from __future__ import annotations

import argparse
import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from runtime.arguments import add_network_flags, integer, size_hw
from runtime.atomic import atomic_write
from runtime.errors import DannetError
from runtime.turns import in_turn

from .cli import check_outputs, command_parser, provenance

if TYPE_CHECKING:  # imported when used: the command's --help needs neither
    from runtime.backends import ModelInfo
    from runtime.segmenter import Segmenter


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


def check_provenance(model: str, info: ModelInfo, checkpoint: str, light: str | None) -> None:
    """The model must have been exported from ``checkpoint`` and, for a released segmentation file, with the
    relighting file ``light`` (the sha256s its metadata or sidecar records): a reference loop without the
    relighting net the graph has (or with another one) compares two networks."""
    from runtime.engine_sidecar import sha256_of

    for flag, path in (("--checkpoint", checkpoint), ("--light", light)):
        if path is not None and not Path(path).is_file():
            raise DannetError(f"{flag} {path}: no such file")
    recorded = info.checkpoint_sha256
    if recorded is None:
        raise DannetError(f"{model}: does not record the checkpoint it was exported from; re-export it with "
                          "dannet-export (engines: rebuild them from the new graph)")
    actual = sha256_of(checkpoint)
    if actual != recorded:
        raise DannetError(f"--checkpoint {checkpoint} (sha256 {actual[:12]}...) is not the checkpoint {model} was "
                          f"exported from (sha256 {recorded[:12]}...); expected that checkpoint, or a graph exported "
                          "from this one")
    recorded = info.light_sha256
    if recorded is None:
        raise DannetError(f"{model}: does not record the relighting file it was exported with; re-export it with "
                          "dannet-export (engines built before their sidecars recorded it: --rebuild always)")
    given = sha256_of(light) if light is not None else ""  # "": no relighting file, as the metadata writes it
    if given == recorded:
        return
    if not given:
        raise DannetError(f"{model} was exported with a relighting file (--light, sha256 {recorded[:12]}...); "
                          "give it with --light")
    if not recorded:
        raise DannetError(f"--light {light}: {model} was exported without a relighting file (its checkpoint's "
                          "own relighting net, or none); drop --light")
    raise DannetError(f"--light {light} (sha256 {given[:12]}...) is not the relighting file {model} was exported "
                      f"with (sha256 {recorded[:12]}...)")


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

    from runtime.cli import add_model_arguments

    parser = command_parser("compare", __doc__)
    add_model_arguments(parser, help="the exported model to compare with the reference loop")
    parser.add_argument("--also-model", action="append", default=[],
                        help="another export of the same checkpoint (e.g. dannet-export int8), timed in the same run, "
                             "frame by frame with the others; repeatable")
    parser.add_argument("--checkpoint", required=True, help="the checkpoint the graph was exported from")
    add_network_flags(parser)
    parser.add_argument("--input-size", type=size_hw, metavar="HxW",
                        help="network input, height first (default: the model's; required for dynamic models)")
    parser.add_argument("--output-size", type=size_hw, metavar="HxW",
                        help="label map, height first (default and only choice: the model's)")
    parser.add_argument("--frames", type=integer(1), default=10, help="timed frames, >= 1 (default 10)")
    parser.add_argument("--warmup", type=integer(0), default=2, help="untimed frames first, >= 0 (default 2)")
    parser.add_argument("--threads", type=integer(0, 1024), default=0,
                        help="CPU threads for every path (0: library default)")
    parser.add_argument("--night-root", help="also score every path's night mIoU on this generated (synthetic) "
                                             "dataset's labelled val images")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="write a bar chart (PNG) here")
    args = parser.parse_args(argv)
    check_outputs(args)

    if args.threads:
        torch.set_num_threads(args.threads)
    paths = [args.model, *args.also_model]
    with ExitStack() as opened:  # every model released at the end, however it ends (an engine's GPU memory)
        models = []
        for path in paths:
            models.append(opened.enter_context(open_model(path, args.backend, args.threads)))
            info = models[-1].info
            if None in (info.weights, info.reweight, info.align_corners):  # the reference loop must do as its tail
                raise DannetError(f"{path}: does not record its class weights and how its tail applies them and "
                                  "upsamples; re-export it with dannet-export (an engine: --rebuild always)")
            check_provenance(path, info, args.checkpoint, args.light)
            args.input_size = size_flag("--input-size", args.input_size, info.input_size, path)
            args.output_size = size_flag("--output-size", args.output_size, info.output_size, path)
        result = measure(args, paths, models)
    report(result, args)


def open_model(path: str, backend: str, threads: int) -> Segmenter:
    """A model to compare, with ``--threads`` (0: the library's default) given to ONNX Runtime's session whenever
    ONNX Runtime runs it, whatever the file is called (``--backend onnxruntime`` runs any file name). PyTorch's
    threads are a setting of the whole process, set once by ``main``; a TensorRT engine has none."""
    from runtime.backends import resolve_backend
    from runtime.segmenter import Segmenter

    options = {"threads": threads} if threads and resolve_backend(path, backend) == "onnxruntime" else {}
    return Segmenter(path, backend, **options)


def measure(args: argparse.Namespace, paths: list[str], models: list[Segmenter]) -> dict:
    """The reference loop and every model on the same frames, frame by frame: latency, agreement, and the night
    mIoU with ``--night-root``."""
    import torch

    from export.scoring import evaluate
    from train.evaluate import load_networks

    from .miou import precision_of
    from .reference_loop import ReferenceSegmenter, reference_labels

    info = models[0].info  # the reference loop's tail is --model's
    weights, tail = np.asarray(info.weights, dtype=np.float32), {"reweight": info.reweight,
                                                                  "align_corners": info.align_corners}
    segmenter, relight, arch, backbone = load_networks(args.checkpoint, args.light, args.arch, args.backbone)
    frames = night_frames(args.frames + args.warmup, args.input_size, args.output_size)
    reference_stages: dict[str, list[float]] = {}
    times: list[list[float]] = [[] for _ in range(len(models) + 1)]  # the reference, then each model
    same_as_reference, same_as_first = [[] for _ in models], [[] for _ in models]
    runners = range(len(models) + 1)  # 0: the reference loop, k: models[k - 1]
    for i, frame in enumerate(frames):  # frame by frame, the paths taking turns: the machine's load hits all alike
        spent, labels = [0.0] * len(runners), [None] * len(models)
        for k in in_turn(runners, i):
            t = time.perf_counter()
            if k == 0:
                expected = reference_labels(segmenter, relight, frame, weights, args.output_size,
                                            reference_stages if i >= args.warmup else None, **tail)
            else:
                labels[k - 1] = models[k - 1].backend.infer(frame[None]).labels[0]
            spent[k] = time.perf_counter() - t
        if i >= args.warmup:
            for record, seconds in zip(times, spent):
                record.append(seconds)
            for k, ours in enumerate(labels):
                same_as_reference[k].append(float((ours == expected).mean()))
                same_as_first[k].append(float((ours == labels[0]).mean()))
    rows = [{"model": path, "precision": precision_of(seg), "backend": seg.backend.name,
             "int8_in_fp32": getattr(seg.backend, "int8_in_fp32", False), **stats(spent),  # runtime.cpu_int8
             "speedup_p50": float(np.median(times[0]) / np.median(spent)),
             "identical_to_reference": float(np.mean(same_as_reference[k])),
             "identical_to_first": float(np.mean(same_as_first[k]))}
            for k, (path, seg, spent) in enumerate(zip(paths, models, times[1:]))]
    result = {
        **provenance(args), "threads": torch.get_num_threads(),
        "model": str(args.model), "arch": arch, "backbone": backbone,
        "input_size": list(args.input_size), "output_size": list(args.output_size), "frames": args.frames,
        "backend": models[0].backend.name, "providers": getattr(models[0].backend, "providers", None),
        "torch": torch.__version__, "reference": stats(times[0]), "ours": stats(times[1]),
        "reference_stages_p50_ms": {k: float(np.median(v) * 1e3) for k, v in reference_stages.items()},
        "speedup_p50": rows[0]["speedup_p50"], "identical_pixels": rows[0]["identical_to_reference"], "models": rows,
    }
    if args.night_root:
        from train.data import dataset_samples

        reference = ReferenceSegmenter(segmenter, relight, weights, args.input_size, args.output_size, **tail)
        scored = evaluate([reference, *models], dataset_samples("synthetic", args.night_root), progress=False)
        result["night_miou"] = {"reference": scored.meters[0].miou}
        for row, meter in zip(rows, scored.meters[1:]):
            row["night_miou"] = meter.miou
    return result


def load_text(load_average: list[float] | None) -> str:
    """", load 1.23" (the 1-minute load average), or nothing where the system does not say."""
    return "" if load_average is None else f", load {load_average[0]:.2f}"


def report(result: dict, args: argparse.Namespace) -> None:
    """The table, and the JSON and plot where asked for."""
    print(f"{result['arch']} ({result['backbone']}), {args.input_size[0]}x{args.input_size[1]} -> "
          f"{args.output_size[0]}x{args.output_size[1]}, {args.frames} frames, "
          f"{result['machine']['cpu']}, {result['threads']} threads{load_text(result['machine']['load_average'])}")
    print(f"{'path':<46} {'p50 ms':>9} {'p90 ms':>9} {'speed-up':>8} {'= ref %':>8} {'= first %':>9} {'mIoU':>6}")
    miou = result.get("night_miou", {}).get("reference")
    print(f"{'reference loop (PyTorch eager + NumPy argmax)':<46} {result['reference']['p50_ms']:>9.1f} "
          f"{result['reference']['p90_ms']:>9.1f} {1:>8.2f} {100:>8.3f} {'':>9} "
          f"{'' if miou is None else f'{100 * miou:6.2f}'}")
    for row in result["models"]:
        name = f"{Path(row['model']).name} ({row['backend']}, {row['precision']})"
        miou = row.get("night_miou")
        print(f"{name[-46:]:<46} {row['p50_ms']:>9.1f} {row['p90_ms']:>9.1f} {row['speedup_p50']:>8.2f} "
              f"{100 * row['identical_to_reference']:>8.3f} {100 * row['identical_to_first']:>9.3f} "
              f"{'' if miou is None else f'{100 * miou:6.2f}'}")
    print("reference stages p50: " + ", ".join(f"{k} {v:.1f} ms" for k, v in result["reference_stages_p50_ms"].items()))
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
    for row in result["models"]:
        ax.barh(f"{Path(row['model']).name} ({row['precision']}): {row['speedup_p50']:.2f}x", row["p50_ms"],
                color="tab:green")
    ax.set_xlabel("median latency per frame (ms)")
    ax.set_title(f"{result['arch']} {result['input_size'][0]}x{result['input_size'][1]} -> "
                 f"{result['output_size'][0]}x{result['output_size'][1]}: speed-up over the reference loop")
    ax.legend(fontsize=7, loc="lower right")
    save(fig, path)


if __name__ == "__main__":
    main()
