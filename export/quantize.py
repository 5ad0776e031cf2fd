"""``export.to_int8``: an INT8 deployment graph by explicit quantisation, refused when night accuracy drops.

The FP32 portable-tail graph from ``dannet-export onnx`` gets QuantizeLinear/DequantizeLinear (Q/DQ) pairs
from ONNX Runtime's static quantisation (``quantize_static``, QDQ format), calibrated on night images of a
dataset fed through the graph's own uint8 ``frame`` input. ``TARGETS``:

- ``tensorrt`` (the default; runs on both): TensorRT builds it as a strongly typed network with explicit
  quantisation, which takes only symmetric signed int8 (QuantizeLinear's zero point must be 0:
  onnx-tensorrt docs/operators.md), so activations and weights are both quantised QInt8 *symmetric* (zero
  point 0), weights per output channel, biases fp32. ONNX Runtime (CPU) fuses its DQ -> Conv -> Q into integer
  convolutions too, given one Q/DQ pair per reader of each quantised tensor (``dedicate_quantization``), except
  a conv whose output several nodes read: that output then has one Q per reader, and ONNX Runtime fuses only a
  conv with a single output Q (measured: none in PSPNet-ResNet-18; in PSPNet-Lite0, 6 of the 62 convs meant to
  be integer stay fp32: the MBConv outputs that a residual add also reads, and the trunk's last, which the
  pyramid pooling reads; ``cpu`` fuses all 62);
- ``cpu``: uint8 activations with a zero point (asymmetric), int8 symmetric weights in 7 bits (|w| <= 64):
  the U8S8 scheme ONNX Runtime's x86 integer kernels compute in, which it otherwise reaches by converting int8
  pairs where it can, and the weight range whose products cannot saturate those kernels on an x86 CPU without
  VNNI (``runtime.cpu_int8``; ONNX Runtime's ``reduce_range``). Measured faster on the CPU (BENCHMARKS.md);
  TensorRT refuses it (``dannet-export engine`` says so). A ``tensorrt`` graph's 8-bit weights would saturate
  there: the runtime runs its Q/DQ pairs in fp32 on such a CPU, and so does the gate.

The tail (nodes named ``tail_*``: re-weighting, upsampling, argmax) is never quantised: its argmax compares
scores that differ in the third digit. ``KEEP_FP32`` names further groups that can stay FP32, chosen by
measurement (BENCHMARKS.md, "INT8 and the CPU path").

The gate: FP32 and INT8 are evaluated through ``runtime.segmenter.Segmenter`` on held-out labelled night
images (``export.scoring.evaluate``, the project's one mIoU); calibration images never overlap them
(``night_sets``). When the INT8 mIoU is more than ``max_miou_drop`` points below FP32, nothing is written.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import onnx

from runtime.atomic import atomic_write, check_writable
from runtime.engine_sidecar import sha256_of
from runtime.errors import EXIT_FAILED, DannetError

from .onnx_export import ExportError, read_metadata
from .tails import LOGITS

if TYPE_CHECKING:
    from train.data import Sample


#: nodes of the tail (export.tails names them so): never quantised
TAIL_PREFIX = "tail_"
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
METHODS = ("minmax", "entropy", "percentile")
#: what the Q/DQ graph is made for (module docstring), and the bits its weights use there
TARGETS = ("tensorrt", "cpu")
WEIGHT_BITS = {"tensorrt": 8, "cpu": 7}
#: node groups that can be kept in FP32 (``fp32_nodes``); the first two exist only in a graph with a relighting net
KEEP_FP32 = ("relight", "relight-output", "classifier", "bottleneck")
RELIGHT_GROUPS = ("relight", "relight-output")
#: measured on the demo's PSPNet-Lite0 (BENCHMARKS.md): the relighting net's output (the image the segmentation
#: net reads) in FP32 keeps 0.3-0.6% more labels equal to FP32 at no measurable cost; the bottleneck in FP32 undoes
#: the speed-up, and the whole relighting net in FP32 costs 5-10% of the time for a similar agreement
DEFAULT_KEEP_FP32 = ("relight-output",)
#: single-input activations that may sit between the PSP bottleneck conv and the classifier
ACTIVATIONS = ("Relu", "Clip")
#: the night training split calibration comes from: Dark Zurich-style datasets' unlabelled rgb_anon/train/night,
#: ACDC's rgb_anon/night/train (read with its labels, which calibration does not use)
CALIBRATION_SPLIT = {"darkzurich-val": "train", "synthetic": "train", "acdc-night": "train"}


class GateError(DannetError):
    """The INT8 model lost more night mIoU than allowed; nothing was written."""

    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class Int8Spec:
    calibration_images: int = 32
    eval_images: int | None = None    # None: the whole labelled split (nightdriving: its first half, night_sets)
    method: str = "minmax"            # minmax | entropy | percentile
    per_channel: bool = True          # weights: one scale per output channel (False: per tensor)
    keep_fp32: tuple[str, ...] | None = None  # None: DEFAULT_KEEP_FP32, where the graph has those parts
    max_miou_drop: float = 1.0        # points of mIoU (percent)
    target: str = "tensorrt"          # tensorrt (symmetric int8, also runs on the CPU) | cpu (uint8 activations)

    def check(self) -> None:
        if self.target not in TARGETS:
            raise ExportError(f"--target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.method not in METHODS:
            raise ExportError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        unknown = sorted(set(self.keep_fp32 or ()) - set(KEEP_FP32))
        if unknown:
            raise ExportError(f"--keep-fp32 {','.join(unknown)}: expected names from {', '.join(KEEP_FP32)}")
        if self.calibration_images < 1 or (self.eval_images is not None and self.eval_images < 1):
            raise ExportError("--calibration-images and --eval-images must be >= 1")
        if self.max_miou_drop < 0:
            raise ExportError(f"--max-miou-drop must be >= 0 points, got {self.max_miou_drop}")


def check_source(path: Path) -> onnx.ModelProto:
    """The FP32 portable-tail graph that ``dannet-export onnx`` writes, static shape, not quantised yet."""
    metadata = read_metadata(path)
    if "dannet.output" not in metadata:
        raise ExportError(f"--onnx {path}: not a dannet-export graph (no dannet.* metadata)")
    found = {"tail": metadata.get("dannet.tail"), "precision": metadata.get("dannet.precision")}
    if found != {"tail": "portable", "precision": "fp32"}:
        raise ExportError(f"--onnx {path}: precision {found['precision']}, {found['tail']} tail; expected the "
                          "fp32 portable-tail graph of dannet-export onnx (without --precision fp16 or --tail plugin)")
    if json.loads(metadata["dannet.input"]).get("size") is None:
        raise ExportError(f"--onnx {path}: has dynamic shapes; calibration needs one input size (export without "
                          "--dynamic)")
    model = onnx.load(str(path))
    if any(node.op_type in QDQ_OPS for node in model.graph.node):
        raise ExportError(f"--onnx {path}: is quantised already; expected the fp32 graph of dannet-export onnx")
    return model


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {name: node for node in graph.node for name in node.output}


def _ancestors(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Every node whose output ``node`` depends on."""
    found: dict[str, onnx.NodeProto] = {}
    waiting = [name for name in node.input if name in producer]
    while waiting:
        parent = producer[waiting.pop()]
        if parent.name not in found:
            found[parent.name] = parent
            waiting += [name for name in parent.input if name in producer]
    return list(found.values())


def keep_fp32_groups(model: onnx.ModelProto, spec: Int8Spec) -> tuple[str, ...]:
    """The groups to keep FP32: those asked for, or by default ``DEFAULT_KEEP_FP32`` less the relighting
    groups of a graph without a relighting net."""
    if spec.keep_fp32 is not None:
        return spec.keep_fp32
    has_relight = any(node.op_type == "Tanh" for node in model.graph.node)
    return tuple(g for g in DEFAULT_KEEP_FP32 if has_relight or g not in RELIGHT_GROUPS)


def fp32_nodes(model: onnx.ModelProto, groups: tuple[str, ...]) -> list[str]:
    """Names of the nodes to leave unquantised: the tail, and the ``groups`` found by the graph's structure:

    - ``relight``: the whole relighting net (every node the Tanh of its output depends on, with the frame's
      normalisation) and the residual add: it runs at the full input resolution with few channels;
    - ``relight-output``: the relighting net's output conv, its Tanh, and the residual add R = I + r;
    - ``classifier``: the last conv, whose output is the logits the tail reads (DeepLab: the ASPP branch convs
      and the Adds that sum them);
    - ``bottleneck``: the conv that feeds the classifier (PSP's 3x3 bottleneck), through any activation.
    """
    graph = model.graph
    producer = _producers(graph)
    chosen = [node.name for node in graph.node if node.name.startswith(TAIL_PREFIX)]
    tanhs = [node for node in graph.node if node.op_type == "Tanh"]
    asked = [g for g in groups if g in RELIGHT_GROUPS]
    if asked and not tanhs:  # a silent no-op would leave the user believing those layers stayed FP32
        raise ExportError(f"--keep-fp32 {','.join(asked)}: the graph has no relighting net (exported from a "
                          "segmentation-only checkpoint); expected classifier and/or bottleneck only")
    for tanh in tanhs:
        readers = [node.name for node in graph.node if tanh.output[0] in node.input]
        if "relight-output" in groups:
            chosen += [producer[tanh.input[0]].name, tanh.name, *readers]
        if "relight" in groups:
            chosen += [node.name for node in _ancestors(tanh, producer)] + [tanh.name, *readers]
    classifier, _ = score_layers(graph)
    if "classifier" in groups:
        chosen += [node.name for node in classifier]
    if "bottleneck" in groups:
        node = producer.get(classifier[0].input[0])
        while node is not None and node.op_type in ACTIVATIONS:  # between the bottleneck and the classifier
            node = producer.get(node.input[0])
        pyramid = producer.get(node.input[0]) if node is not None and node.op_type == "Conv" else None
        if len(classifier) > 1 or pyramid is None or pyramid.op_type != "Concat":  # PSP's: features + pooled bins
            raise ExportError("--keep-fp32 bottleneck: the graph has no PSP bottleneck (a conv reading the pyramid's "
                              "concatenation before the classifier; DeepLab's ASPP reads the backbone): expected "
                              "classifier and/or relight*")
        chosen.append(node.name)
    return list(dict.fromkeys(chosen))


def score_layers(graph: onnx.GraphProto) -> tuple[list[onnx.NodeProto], set[str]]:
    """The classifier, as the nodes that make the logits the tail reads, and the tensors between its convs and the
    logits: one conv (PSPNet), or DeepLab-v2's ASPP, whose branch convs' outputs are summed by Adds."""
    producer = _producers(graph)
    nodes, tensors, waiting = [], {LOGITS}, [LOGITS]
    while waiting:
        name = waiting.pop()
        if name not in producer:
            raise ExportError(f"the graph's logits are summed from {name!r}, which no node computes: not a "
                              "dannet-export segmentation graph")
        node = producer[name]
        nodes.append(node)
        if node.op_type == "Add":
            tensors.update(node.input)
            waiting += list(node.input)
        elif node.op_type != "Conv":
            raise ExportError(f"the graph's logits come from a {node.op_type} node ({node.name}), not from convs "
                              "(summed by Adds): not a dannet-export segmentation graph")
    return nodes, tensors


@dataclass(frozen=True)
class NightSets:
    """Disjoint night images: ``calibration`` (labels not needed) and ``evaluation`` (labelled, held out)."""

    calibration: list[Sample]
    evaluation: list[Sample]
    calibration_from: str
    evaluation_from: str


def _spread(count: int, available: int) -> list[int]:
    """``count`` indices spread evenly over ``available`` (sequences of frames: neighbours are near copies)."""
    return sorted(set(np.linspace(0, available - 1, min(count, available)).round().astype(int).tolist()))


def split_labelled(dataset: str, labelled: list[Sample], eval_images: int | None) -> tuple[list[Sample], list[Sample]]:
    """(evaluation, calibration pool) for a dataset with no unlabelled night split (Nighttime Driving: its 50
    labelled test images are all it has): the first ``eval_images`` held out for the gate, by default the first
    half (rounded up), and the images after them for calibration. Two runs of files, not alternate images:
    neighbouring images can be frames of one drive, near copies, and calibrating on one of each pair would let
    the gate measure INT8 on near copies of its calibration images."""
    held_out = (len(labelled) + 1) // 2 if eval_images is None else eval_images
    evaluation, pool = labelled[:held_out], labelled[held_out:]
    if not pool and eval_images is not None:
        raise ExportError(f"--eval-images {eval_images}: leaves none of the {len(labelled)} {dataset} images for "
                          "calibration; give fewer")
    if not pool:
        raise ExportError(f"--dataset {dataset}: has {len(labelled)} labelled image; the gate and the calibration "
                          "need at least 2 (one each)")
    return evaluation, pool


def night_sets(dataset: str, root: str | Path, calibration_images: int, eval_images: int | None) -> NightSets:
    """Calibration: ``calibration_images`` spread over the unlabelled night training split where the dataset has
    one (``CALIBRATION_SPLIT``; evaluation is then the first ``eval_images`` of the labelled night split, by
    default all of it), else over the labelled images ``split_labelled`` leaves after the evaluation ones."""
    from train.data import dataset_samples

    labelled = dataset_samples(dataset, root)
    split = CALIBRATION_SPLIT.get(dataset)
    if split is not None:
        evaluation = labelled[:eval_images]
        if dataset == "darkzurich-val":
            from train.data.datasets import darkzurich_samples

            pool = darkzurich_samples(Path(root), split)
        else:
            pool = dataset_samples(dataset, root, split)
        pool_name = f"{split} night split"
    else:
        evaluation, pool = split_labelled(dataset, labelled, eval_images)
        pool_name = f"labelled images after the first {len(evaluation)}"
    picked = _spread(calibration_images, len(pool))
    return NightSets([pool[i] for i in picked], evaluation,
                     f"{dataset} {pool_name}: {len(picked)} of {len(pool)} images, indices {picked}",
                     f"{dataset} labelled night split: the first {len(evaluation)} images")


class _FrameReader:
    """Calibration batches for ``quantize_static``, each image as the runtime would feed it (``prepare``); ONNX
    Runtime's ``CalibrationDataReader`` recognises any class with ``get_next``."""

    def __init__(self, samples: list[Sample], prepare: Callable[[np.ndarray], np.ndarray]) -> None:
        self.frames = self._frames(samples, prepare)

    @staticmethod
    def _frames(samples: list[Sample], prepare: Callable[[np.ndarray], np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        from train.data.datasets import load_image

        for sample in samples:
            yield {"frame": prepare(np.asarray(load_image(sample.image)))[None]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.frames, None)


def quantize(source: Path, out: Path, reader: _FrameReader, spec: Int8Spec, excluded: list[str]) -> None:
    """ONNX Runtime's static QDQ quantisation: symmetric int8 weights (``WEIGHT_BITS``); activations symmetric int8
    (TensorRT's scheme) or, for ``target="cpu"``, asymmetric uint8. Biases stay fp32: ONNX Runtime would store
    them as int32 behind a DequantizeLinear, which TensorRT's parser refuses (DequantizeLinear takes int8, fp8, int4;
    onnx-tensorrt docs/operators.md); measured on the demo's model, ONNX Runtime runs fp32 biases as fast, with
    the same labels (BENCHMARKS.md)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ONNX Runtime's advice to pre-process the graph: onnxsim did that
    cpu = spec.target == "cpu"
    try:
        quantize_static(str(source), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=spec.per_channel,
                        reduce_range=WEIGHT_BITS[spec.target] == 7,
                        activation_type=QuantType.QUInt8 if cpu else QuantType.QInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=excluded, calibrate_method=methods[spec.method],
                        calibration_providers=["CPUExecutionProvider"],
                        extra_options={"ActivationSymmetric": not cpu, "WeightSymmetric": True, "QuantizeBias": False})
    finally:
        root.setLevel(level)


def dedicate_quantization(model: onnx.ModelProto) -> int:
    """Give every reader of a quantised tensor its own QuantizeLinear -> DequantizeLinear pair, with its own copy
    of the scale and zero point; returns the number of pairs added.

    Why: ONNX Runtime's x86 integer convolutions take uint8 activations, and its graph optimiser converts an int8
    Q -> DQ pair to uint8 only where the pair has one reader. A tensor that two nodes read (a residual block's
    input: the block's first conv and the skip's Add) kept its int8 pair, and its conv ran in fp32 between a
    dequantize and a quantize: measured, 13 of PSPNet-ResNet-18's 29 convs, 43% of its INT8 time at 540x960.
    The copies need their own scale initializers, else common-subexpression elimination merges them back.
    TensorRT folds every pair into the conv that reads it, so one pair per reader is the same network to it."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in dict.fromkeys(node.input):  # a node reading a tensor twice is one reader
            readers.setdefault(name, []).append(node)
    outputs = {output.name for output in graph.output}
    nodes, added = [], 0
    for node in graph.node:
        nodes.append(node)
        if node.op_type != "QuantizeLinear":
            continue
        uses = [(dq, reader) for dq in readers.get(node.output[0], []) if dq.op_type == "DequantizeLinear"
                and dq.output[0] not in outputs for reader in readers.get(dq.output[0], [])]
        for copy, (dq, reader) in enumerate(uses[1:], start=1):
            suffix = f"_for_{copy}"
            params = []
            for name in node.input[1:]:  # scale, zero point
                param = onnx.TensorProto()
                param.CopyFrom(initializers[name])
                param.name = f"{name}_{node.name}{suffix}"
                graph.initializer.append(param)
                params.append(param.name)
            q = onnx.helper.make_node("QuantizeLinear", [node.input[0], *params], [node.output[0] + suffix],
                                      name=node.name + suffix)
            q.attribute.extend(node.attribute)
            dq_copy = onnx.helper.make_node("DequantizeLinear", [q.output[0], *params], [dq.output[0] + suffix],
                                            name=dq.name + suffix)
            dq_copy.attribute.extend(dq.attribute)
            reader.input[:] = [dq_copy.output[0] if name == dq.output[0] else name for name in reader.input]
            nodes += [q, dq_copy]  # right after the original Q: its input exists there, and the reader comes later
            added += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return added


def unquantize_logits(model: onnx.ModelProto, scores: set[str]) -> None:
    """Remove the Q/DQ pairs ONNX Runtime puts on the classifier's outputs (``scores``: the logits, and for DeepLab
    the ASPP branch outputs its Adds sum): the tail must read fp32 logits (int8 logits would make argmax ties of
    scores 1/127 of the range apart, and a sum of int8-rounded branches is no better). The classifier convs still
    take int8 input and weights (TensorRT: int8 in, fp32 out; ONNX Runtime runs them in fp32)."""
    graph = model.graph
    quantize = [node for node in graph.node if node.op_type == "QuantizeLinear" and node.input[0] in scores]
    for q in quantize:
        for dq in [node for node in graph.node if node.op_type == "DequantizeLinear" and node.input[0] == q.output[0]]:
            for node in graph.node:
                node.input[:] = [q.input[0] if name == dq.output[0] else name for name in node.input]
            graph.node.remove(dq)
        graph.node.remove(q)
    used = {name for node in graph.node for name in node.input}
    for unused in [init for init in graph.initializer if init.name not in used]:  # the pair's scale and zero point
        graph.initializer.remove(unused)


def to_int8(onnx_path: str | Path, out: str | Path, dataset: str, root: str | Path, spec: Int8Spec = Int8Spec(),
            say: Callable[[str], None] = print) -> Path:
    """Quantise ``onnx_path`` to ``out``, unless INT8 loses more than ``spec.max_miou_drop`` points of night mIoU
    (``GateError``; ``out`` is then left as it was)."""
    import onnxruntime

    from .scoring import evaluate
    from runtime.segmenter import Segmenter

    started = time.perf_counter()
    onnx_path, out = Path(onnx_path), Path(out)
    spec.check()
    check_writable(out, "--out")  # before the work, not after it
    source = check_source(onnx_path)
    groups = keep_fp32_groups(source, spec)
    excluded = fp32_nodes(source, groups)
    sets = night_sets(dataset, root, spec.calibration_images, spec.eval_images)
    fp32 = Segmenter(onnx_path, "onnxruntime")
    say(f"[1/3] calibrating ({spec.method}) on {sets.calibration_from}")
    with tempfile.TemporaryDirectory(prefix="dannet-int8.") as folder:
        candidate = Path(folder) / "int8.onnx"
        quantize(onnx_path, candidate, _FrameReader(sets.calibration, fp32.prepare), spec, excluded)
        model = onnx.load(str(candidate))
        unquantize_logits(model, score_layers(source.graph)[1])
        if spec.target == "tensorrt":  # uint8 pairs need no conversion, so ORT fuses them whatever reads them
            dedicate_quantization(model)
        # the metadata before the gate: the runtime reads how to run the model from it (``weight_bits``)
        metadata = {p.key: p.value for p in source.metadata_props}
        metadata.update({
            "dannet.precision": "int8",
            "dannet.quantization": json.dumps({
                "tool": f"onnxruntime {onnxruntime.__version__} quantize_static, QDQ", "target": spec.target,
                "activations": ("uint8 asymmetric" if spec.target == "cpu" else "int8 symmetric (zero point 0)")
                               + ", per tensor",
                "weights": f"int8 symmetric (zero point 0), {WEIGHT_BITS[spec.target]} bits, "
                           f"{'per channel' if spec.per_channel else 'per tensor'}",
                "weight_bits": WEIGHT_BITS[spec.target],
                "biases": "fp32",
                "calibration": {"method": spec.method, "images": len(sets.calibration),
                                "from": sets.calibration_from},
                "fp32_nodes": excluded, "keep_fp32": list(groups),
                "source_sha256": sha256_of(onnx_path)}),
        })
        onnx.helper.set_model_props(model, metadata)
        onnx.save(model, str(candidate))
        int8 = Segmenter(candidate, "onnxruntime", say=lambda notice: None)  # said below, without the temporary path
        in_fp32 = " (INT8's Q/DQ pairs in fp32: this CPU's integer kernels would saturate on 8-bit weights)"
        say(f"[2/3] the gate: FP32 and INT8 on {sets.evaluation_from}{in_fp32 if int8.backend.int8_in_fp32 else ''}")
        evaluation = evaluate([fp32, int8], sets.evaluation, progress=False)
        fp32_miou, int8_miou = (100 * meter.miou for meter in evaluation.meters)
        drop = fp32_miou - int8_miou
        if np.isnan(drop):
            raise GateError(f"--eval-images: the {len(sets.evaluation)} {dataset} evaluation images have no labelled "
                            f"pixel, so the gate cannot measure INT8; {out} not written")
        if fp32_miou <= spec.max_miou_drop:  # INT8 could lose all of it and pass: a gate that cannot fail
            raise GateError(f"FP32 night mIoU {fp32_miou:.2f} on the {len(sets.evaluation)} {dataset} evaluation "
                            f"images is not above --max-miou-drop {spec.max_miou_drop:g}, so the gate could not "
                            "refuse any INT8 model (a trained model? held-out images it scores on?); "
                            f"{out} not written")
        if not drop <= spec.max_miou_drop:
            raise GateError(f"INT8 night mIoU {int8_miou:.2f} is {drop:.2f} points below FP32 {fp32_miou:.2f} on "
                            f"{len(sets.evaluation)} {dataset} images (--max-miou-drop {spec.max_miou_drop:g}); "
                            f"{out} not written")
    metadata["dannet.accuracy_gate"] = json.dumps({
        "evaluated_on": sets.evaluation_from, "images": len(sets.evaluation), "fp32_miou": fp32_miou,
        "int8_miou": int8_miou, "drop_points": drop, "max_drop_points": spec.max_miou_drop,
        "identical_pixels": evaluation.same_as_first[1],
        "qdq_in_fp32": int8.backend.int8_in_fp32})  # how this CPU ran INT8 (runtime.cpu_int8)
    onnx.helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    out = atomic_write(out, model.SerializeToString())  # an existing model is replaced whole or not at all
    say(f"[3/3] wrote {out}: INT8 night mIoU {int8_miou:.2f} vs FP32 {fp32_miou:.2f} ({-drop:+.2f} points, "
        f"{100 * evaluation.same_as_first[1]:.2f}% of pixels labelled as FP32), {len(excluded)} nodes kept FP32, "
        f"{time.perf_counter() - started:.0f} s")
    return out

