"""The tail of the deployment graph, appended to an exported frame -> logits ONNX graph.

Both flavours compute the same thing (DESIGN.md section 3): bilinear upsampling of the logits to
the output size, per-class weights, argmax. ``portable`` uses standard ops (Mul/Add, Resize, ArgMax,
Cast to uint8) and runs anywhere; ``plugin`` is one ``dannet::ReweightArgmax`` node for TensorRT
with int32 labels (or four uint8 labels per int32 with ``pack4``). The body of the graph is the
same in both, so the plugin graph is the portable one with exactly the tail replaced.

With ``confidence``, both flavours have a second output, ``confidence``: per pixel, the softmax of the
re-weighted scores at the winning class as a level ``floor(255 p + 0.5)`` (the op spec,
plugins/reweightArgmax/README.md), shaped and typed like the labels.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.reweight_argmax import log_weights

PLUGIN_OP = "ReweightArgmax"
PLUGIN_DOMAIN = "dannet"
PLUGIN_VERSION = "1"
LOGITS, LABELS, CONFIDENCE = "logits", "labels", "confidence"


def _replace_output(graph: onnx.GraphProto, old: str, new: onnx.ValueInfoProto) -> None:
    outputs = [o for o in graph.output if o.name != old]
    if len(outputs) == len(graph.output):
        raise ValueError(f"the graph has no output named {old!r}")
    del graph.output[:]
    graph.output.extend([*outputs, new])


def _batch_dim(graph: onnx.GraphProto) -> int | str:
    dim = graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "batch")


def _logits_type(graph: onnx.GraphProto) -> int:
    return next(o for o in graph.output if o.name == LOGITS).type.tensor_type.elem_type


def _confidence_nodes(scores: str) -> list[onnx.NodeProto]:
    """Upsampled re-weighted scores (N x C x H x W fp32) -> uint8 confidence levels N x H x W.

    ``p = 1 / sum_c exp(s_c - max s)`` (the softmax at the winning class; the shift keeps every exponential
    in (0, 1]), then ``floor(255 p + 0.5)``, cast to uint8 through fp32 like the labels. Where the scores are
    not finite (an fp16 network's logits can overflow to inf: inf - inf is NaN) the level is 0, never a cast
    of NaN to uint8, which is undefined (the op spec: such pixels may differ between implementations).
    """
    return [
        helper.make_node("ReduceMax", [scores, "tail_class_axis"], ["tail_max"], keepdims=1, name="tail_max"),
        helper.make_node("Sub", [scores, "tail_max"], ["tail_shifted"], name="tail_shift"),
        helper.make_node("Exp", ["tail_shifted"], ["tail_exp"], name="tail_exp"),
        helper.make_node("ReduceSum", ["tail_exp", "tail_class_axis"], ["tail_sum"], keepdims=0, name="tail_sum"),
        helper.make_node("Reciprocal", ["tail_sum"], ["tail_probability"], name="tail_probability"),
        helper.make_node("Mul", ["tail_probability", "tail_255"], ["tail_scaled"], name="tail_scale_255"),
        helper.make_node("Add", ["tail_scaled", "tail_half"], ["tail_rounding"], name="tail_round_half_up"),
        helper.make_node("Floor", ["tail_rounding"], ["tail_levels"], name="tail_floor"),
        helper.make_node("IsNaN", ["tail_levels"], ["tail_unknown"], name="tail_unknown"),
        helper.make_node("Where", ["tail_unknown", "tail_level_0", "tail_levels"], ["tail_defined"],
                         name="tail_nan_to_0"),
        helper.make_node("Cast", ["tail_defined"], [CONFIDENCE], to=TensorProto.UINT8, name="tail_cast_confidence"),
    ]


def append_portable_tail(model: onnx.ModelProto, weights: np.ndarray, out_size: tuple[int, int],
                         align_corners: bool = True, mode: int = 0, confidence: bool = False) -> onnx.ModelProto:
    """logits -> [Cast fp32] -> Mul w (mode 0) / Add log w (mode 1) -> Resize -> ArgMax -> Cast fp32 -> Cast uint8,
    and with ``confidence`` the upsampled scores also -> softmax at the winner -> uint8 levels."""
    graph = model.graph
    nodes, x = [], LOGITS
    if _logits_type(graph) != TensorProto.FLOAT:
        # fp32 island: the argmax compares re-weighted scores that differ in the 3rd-4th digit; fp16
        # rounding there would flip labels that the plugin (fp32 arithmetic) gets right
        nodes.append(helper.make_node("Cast", [x], ["tail_logits_fp32"], to=TensorProto.FLOAT, name="tail_cast_fp32"))
        x = "tail_logits_fp32"
    w = np.asarray(weights, dtype=np.float32)
    scale = log_weights(w) if mode == 1 else w  # the plugin's log weights, bit for bit
    graph.initializer.extend([
        numpy_helper.from_array(scale.reshape(1, -1, 1, 1), "tail_weights"),
        numpy_helper.from_array(np.array(out_size, dtype=np.int64), "tail_out_size"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "tail_zero"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "tail_two"),
    ])
    nodes += [
        helper.make_node("Add" if mode == 1 else "Mul", [x, "tail_weights"], ["tail_scores"], name="tail_reweight"),
        helper.make_node("Shape", ["tail_scores"], ["tail_shape"], name="tail_shape"),
        helper.make_node("Slice", ["tail_shape", "tail_zero", "tail_two"], ["tail_nc"], name="tail_nc"),
        helper.make_node("Concat", ["tail_nc", "tail_out_size"], ["tail_sizes"], axis=0, name="tail_sizes"),
        helper.make_node("Resize", ["tail_scores", "", "", "tail_sizes"], ["tail_upsampled"], mode="linear",
                         coordinate_transformation_mode="align_corners" if align_corners else "pytorch_half_pixel",
                         name="tail_resize"),
        helper.make_node("ArgMax", ["tail_upsampled"], ["tail_argmax"], axis=1, keepdims=0, name="tail_argmax"),
        # TensorRT converts to uint8 only from fp32/fp16 (DataType::kUINT8, NvInferRuntimeBase.h), never from
        # the int64 ArgMax gives: through fp32, exact for labels < 2^24
        helper.make_node("Cast", ["tail_argmax"], ["tail_labels_fp32"], to=TensorProto.FLOAT, name="tail_cast_labels"),
        helper.make_node("Cast", ["tail_labels_fp32"], [LABELS], to=TensorProto.UINT8, name="tail_cast_uint8"),
    ]
    graph.node.extend(nodes)
    shape = [_batch_dim(graph), *out_size]
    _replace_output(graph, LOGITS, helper.make_tensor_value_info(LABELS, TensorProto.UINT8, shape))
    if confidence:
        graph.initializer.extend([
            numpy_helper.from_array(np.array([1], dtype=np.int64), "tail_class_axis"),
            numpy_helper.from_array(np.array(255, dtype=np.float32), "tail_255"),
            numpy_helper.from_array(np.array(0.5, dtype=np.float32), "tail_half"),
            numpy_helper.from_array(np.array(0, dtype=np.float32), "tail_level_0"),
        ])
        graph.node.extend(_confidence_nodes("tail_upsampled"))
        graph.output.append(helper.make_tensor_value_info(CONFIDENCE, TensorProto.UINT8, shape))
    return model


def append_plugin_tail(model: onnx.ModelProto, weights: np.ndarray, out_size: tuple[int, int],
                       align_corners: bool = True, mode: int = 0, pack4: bool = False,
                       confidence: bool = False) -> onnx.ModelProto:
    """logits -> dannet::ReweightArgmax -> int32 labels (N x H x W, or N x H x ceil(W/4) with pack4), and with
    ``confidence`` (attribute ``confidence=1``) int32 confidence levels shaped and packed like the labels."""
    graph = model.graph
    # without confidence, the node is exactly the one plugins built before the attribute existed understand
    extra = {"confidence": 1} if confidence else {}
    node = helper.make_node(
        PLUGIN_OP, [LOGITS], [LABELS, CONFIDENCE] if confidence else [LABELS], domain=PLUGIN_DOMAIN,
        name="reweight_argmax", weights=[float(v) for v in np.asarray(weights, dtype=np.float32)],
        out_height=int(out_size[0]), out_width=int(out_size[1]), align_corners=int(align_corners), pack4=int(pack4),
        mode=int(mode), **extra, plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_DOMAIN)
    graph.node.append(node)
    width = (out_size[1] + 3) // 4 if pack4 else out_size[1]
    shape = [_batch_dim(graph), out_size[0], width]
    _replace_output(graph, LOGITS, helper.make_tensor_value_info(LABELS, TensorProto.INT32, shape))
    if confidence:
        graph.output.append(helper.make_tensor_value_info(CONFIDENCE, TensorProto.INT32, shape))
    if not any(o.domain == PLUGIN_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, 1))
    return model
