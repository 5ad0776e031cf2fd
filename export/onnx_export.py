"""``export.to_onnx``: a trained DANNet as one ONNX graph, camera frame in, labels out.

frame (uint8 N x H x W x 3, RGB) -> cast, normalise, NCHW -> relighting (R = I + r) -> segmentation
-> tail (``export.tails``) -> labels (with ``ExportSpec.confidence``, also confidence levels).
Exported with the dynamo exporter (the TorchScript one cannot export PSP's adaptive pooling on
68 x 121 maps), PSP pooling swapped for pooling matrices, body simplified with onnxsim where
installed, checked with onnx.checker, metadata recorded.
"""
from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import onnx
import torch

from runtime.atomic import atomic_write, check_writable
from runtime.classes import CLASS_NAMES, IMAGENET_MEAN, IMAGENET_STD, PALETTE
from runtime.backends import DYNAMIC_EXPORT_SIZES
from runtime.engine_sidecar import sha256_of
from runtime.errors import DannetError, one_line
from train.checkpoint import load_checkpoint
from train.evaluate import networks_of, recorded_reweighting, weights_std_setting
from train.factory import class_weights_of
from train.models.relight import SIDE_MULTIPLE

from .graph import DeploymentModel, replace_adaptive_pooling
from .tails import CONFIDENCE, LOGITS, append_plugin_tail, append_portable_tail

TOOL_VERSION = "dannet-edge 0.1.0"
OPSET = 18
#: the relighting net gives R = I + r back at the input's size only for H, W multiples of this
SIZE_MULTIPLE = SIDE_MULTIPLE


class ExportError(DannetError, ValueError):
    """Bad export arguments; the message names the flag and what was expected."""


@dataclass(frozen=True)
class ExportSpec:
    input_size: tuple[int, int] = (540, 960)
    output_size: tuple[int, int] = (1080, 1920)
    tail: str = "portable"          # portable | plugin
    precision: str = "fp32"         # fp32 | fp16
    #: the tail's class weights std and re-weighting (logits: mode 0, probs: mode 1); None: what the checkpoint's run
    #: validated with (its eval.*), the reference's for a released file
    weights_std: float | None = None
    reweight: str | None = None
    align_corners: bool = True
    pack4: bool = False
    dynamic: bool = False
    confidence: bool = False        # a second output: the winning class's re-weighted softmax as levels 0-255

    def check(self, has_relight: bool) -> None:
        if self.tail not in ("portable", "plugin"):
            raise ExportError(f"--tail must be portable or plugin, got {self.tail!r}")
        if self.precision not in ("fp32", "fp16"):
            raise ExportError(f"--precision must be fp32 or fp16, got {self.precision!r}")
        if self.reweight not in ("logits", "probs"):
            raise ExportError(f"--reweight must be logits or probs, got {self.reweight!r}")
        if self.pack4 and self.tail != "plugin":
            raise ExportError("--pack4 needs --tail plugin (the portable tail outputs uint8 already)")
        if min(*self.input_size, *self.output_size) <= 0:
            raise ExportError(f"--input-size/--output-size must be positive, got {self.input_size} / {self.output_size}")
        if has_relight and any(s % SIZE_MULTIPLE for s in self.input_size):
            h, w = self.input_size
            raise ExportError(f"--input-size {h}x{w}: the relighting net needs H and W divisible by {SIZE_MULTIPLE} "
                              f"(e.g. {h - h % SIZE_MULTIPLE}x{w - w % SIZE_MULTIPLE})")


def dynamic_shapes(spec: ExportSpec) -> dict | None:
    """torch.export dims of the frame: batch, and H, W as multiples of 4 (None for a static graph)."""
    if not spec.dynamic:
        return None
    sizes, m = DYNAMIC_EXPORT_SIZES, SIZE_MULTIPLE  # the range the runtime brings every frame into
    batch = torch.export.Dim("batch", min=1, max=64)
    h4 = torch.export.Dim("height_div4", min=sizes.low[0] // m, max=sizes.high[0] // m)
    w4 = torch.export.Dim("width_div4", min=sizes.low[1] // m, max=sizes.high[1] // m)
    return {"frame": {0: batch, 1: m * h4, 2: m * w4}}


def example_frame(spec: ExportSpec) -> torch.Tensor:
    # a dynamic batch dimension must not be traced with a batch of 1 (torch.export specialises 1)
    return torch.zeros(2 if spec.dynamic else 1, *spec.input_size, 3, dtype=torch.uint8)


class Deployment(NamedTuple):
    """A checkpoint ready to export: its networks as one frame -> logits module, what they are, the tail's class
    weights, and the export spec with the checkpoint's own test-time re-weighting filled in."""

    model: DeploymentModel
    arch: str
    backbone: str
    weights: np.ndarray
    spec: ExportSpec


def deployment_model(checkpoint: str | Path, spec: ExportSpec, light: str | Path | None, arch: str | None,
                     backbone: str | None) -> Deployment:
    """The checkpoint's networks as one frame -> logits module (PSP pooling as matrices), checked against
    ``spec``. The tail's class weights have std ``spec.weights_std`` (default: the run's ``eval.weights_std``) and
    come from the class proportions the checkpoint's run trained with (the paper's Cityscapes table for a
    released file)."""
    ckpt = load_checkpoint(str(checkpoint))
    weights_std, reweight = recorded_reweighting(ckpt, spec.weights_std, spec.reweight)
    weights = class_weights_of(ckpt.config, weights_std, weights_std_setting(spec.weights_std))  # before the work
    spec = replace(spec, weights_std=weights_std, reweight=reweight)
    segmenter, relight, arch, backbone = networks_of(ckpt, str(light) if light else None, arch, backbone)
    spec.check(relight is not None)
    replace_adaptive_pooling(segmenter)
    dtype = torch.float16 if spec.precision == "fp16" else torch.float32
    model = DeploymentModel(segmenter.to(dtype), relight.to(dtype) if relight is not None else None, dtype).eval()
    return Deployment(model, arch, backbone, weights, spec)


def deployment_metadata(spec: ExportSpec, weights: np.ndarray, label_format: str, arch: str, backbone: str,
                        relight: bool, checkpoint: str | Path, light: str | Path | None) -> dict[str, str]:
    """What a runtime needs to know about an exported model (the ``dannet.*`` keys ``ModelInfo`` reads).

    ``dannet.output`` names the labels, their format and size; with ``spec.confidence`` also the second output
    (``"confidence": {"name": "confidence", "format": ...}``, the same format as the labels)."""
    output = {"name": "labels", "format": label_format, "size": list(spec.output_size)}
    if spec.confidence:
        output["confidence"] = {"name": CONFIDENCE, "format": label_format}
    return {
        "dannet.class_names": json.dumps(CLASS_NAMES), "dannet.palette": json.dumps(PALETTE.tolist()),
        "dannet.weights_std": str(spec.weights_std), "dannet.weights": json.dumps([float(w) for w in weights]),
        "dannet.reweight": spec.reweight, "dannet.align_corners": str(int(spec.align_corners)),
        "dannet.normalization": json.dumps({"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "scale": 1 / 255}),
        "dannet.input": json.dumps({"name": "frame", "layout": "NHWC", "color": "RGB", "dtype": "uint8",
                                    "size": None if spec.dynamic else list(spec.input_size)}),
        "dannet.output": json.dumps(output),
        "dannet.tail": spec.tail, "dannet.precision": spec.precision, "dannet.arch": arch,
        "dannet.backbone": backbone, "dannet.relight": str(int(relight)),
        "dannet.checkpoint_sha256": sha256_of(checkpoint),
        "dannet.light_sha256": sha256_of(light) if light else "", "dannet.tool": TOOL_VERSION,
    }


def _export_body(model: torch.nn.Module, spec: ExportSpec) -> onnx.ModelProto:
    # the exporter warns about every torchvision op it cannot register; torchvision is not used here
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example_frame(spec),), dynamo=True, input_names=["frame"],
                                    output_names=[LOGITS], opset_version=OPSET, dynamic_shapes=dynamic_shapes(spec),
                                    verbose=False)
    return program.model_proto


def _read_frame_as_float(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every reader of the uint8 frame reads an fp32 copy instead.

    TensorRT takes uint8 only at the network's inputs and outputs, converted to/from fp32 or fp16 before any
    other layer (``DataType::kUINT8``, NvInferRuntimeBase.h); its Shuffle and Shape layers have no uint8. The
    exporter transposes the frame before casting it, and a dynamic graph reads the frame's Shape; both now
    read the copy (the Cast that followed the Transpose becomes fp32 -> fp32, which onnxsim removes).
    """
    graph = model.graph
    frame = graph.input[0].name
    del graph.value_info[:]  # the exporter's intermediate types, some now stale; onnxsim infers them again
    for node in graph.node:
        node.input[:] = [f"{frame}_fp32" if name == frame else name for name in node.input]
    graph.node.insert(0, onnx.helper.make_node("Cast", [frame], [f"{frame}_fp32"], to=onnx.TensorProto.FLOAT,
                                               name="frame_cast_fp32"))
    return model


def _simplify(model: onnx.ModelProto, say: Callable[[str], None]) -> onnx.ModelProto:
    try:
        import onnxsim
    except ImportError:
        say("warning: onnxsim is not installed (pip install onnxsim): graph not simplified")
        return model
    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception as e:  # onnxsim raises many kinds; the unsimplified graph is still correct
        say(f"warning: onnxsim failed ({str(e).splitlines()[0][:200]}): graph not simplified")
        return model
    if not ok:
        say("warning: onnxsim could not validate its result: graph not simplified")
        return model
    return simplified


def to_onnx(checkpoint: str | Path, out: str | Path, spec: ExportSpec = ExportSpec(), *, light: str | Path | None = None,
            arch: str | None = None, backbone: str | None = None, simplify: bool = True,
            say: Callable[[str], None] = print) -> Path:
    """Export a checkpoint (ours, or a released segmentation file + ``light``) to ``out``; returns ``out``."""
    started = time.perf_counter()
    check_writable(out, "--out")  # before the work, not after it
    model, arch, backbone, weights, spec = deployment_model(checkpoint, spec, light, arch, backbone)
    relight = model.relight
    say(f"[1/4] exporting {arch} ({backbone}{' + relighting' if relight is not None else ''}, {spec.precision}) "
        f"at {spec.input_size[0]}x{spec.input_size[1]}{' (dynamic)' if spec.dynamic else ''} with the dynamo exporter")
    body = _read_frame_as_float(_export_body(model, spec))
    say(f"[2/4] simplifying ({len(body.graph.node)} nodes)")
    if simplify:
        body = _simplify(body, say)
    say(f"[3/4] appending the {spec.tail} tail -> {spec.output_size[0]}x{spec.output_size[1]} labels"
        f"{' and confidence' if spec.confidence else ''}")
    mode = 1 if spec.reweight == "probs" else 0
    if spec.tail == "plugin":
        graph = append_plugin_tail(body, weights, spec.output_size, spec.align_corners, mode, spec.pack4,
                                   spec.confidence)
    else:
        graph = append_portable_tail(body, weights, spec.output_size, spec.align_corners, mode, spec.confidence)
    label_format = "uint8" if spec.tail == "portable" else ("pack4" if spec.pack4 else "int32")
    metadata = deployment_metadata(spec, weights, label_format, arch, backbone, relight is not None, checkpoint, light)
    onnx.helper.set_model_props(graph, metadata)
    graph.producer_name, graph.producer_version = "dannet-edge", TOOL_VERSION.split()[-1]
    say("[4/4] checking and saving")
    onnx.checker.check_model(graph)
    out = atomic_write(out, graph.SerializeToString())  # an existing model is replaced whole or not at all
    say(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {len(graph.graph.node)} nodes, "
        f"{time.perf_counter() - started:.0f} s)")
    return out


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``dannet.*`` metadata of an exported graph (without loading its weights)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file") from None
    except Exception as e:  # protobuf's DecodeError and others: whatever is not an ONNX file
        raise ExportError(f"{path}: not an ONNX graph ({one_line(str(e))[:200]}); expected a dannet-export "
                          ".onnx file") from None
    return {p.key: p.value for p in model.metadata_props}


def onnx_weights(metadata: dict[str, str]) -> np.ndarray:
    return np.asarray(json.loads(metadata["dannet.weights"]), dtype=np.float32)
