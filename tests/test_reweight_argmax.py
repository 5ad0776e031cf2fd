"""ReweightArgmax: the NumPy twin against PyTorch, the C++ host reference against the twin (bit for
bit, also built with FMA contraction; confidence levels within one of the NumPy definition), mode 1's
log weights the same in every language, the kernels compiled by NVRTC (no GPU needed), the kernel
benchmark's table, and on a GPU the kernel against the twin."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import itertools
import platform
import re
import warnings
from decimal import Decimal, localcontext
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runtime.classes import class_weights
from runtime.plugin_library import PluginLibraryError, find_plugin_library
from runtime.reweight_argmax import log_weights, pack4, reweight_argmax, reweight_argmax_confidence, unpack4

REPO = Path(__file__).resolve().parents[1]
HOST_LIBRARY = REPO / "build" / "plugins" / "libdannet_reweight_argmax_host.so"
#: the same library built with -O3 -ffp-contract=fast (-mfma on x86): FMA contraction allowed
CONTRACTED_HOST_LIBRARY = REPO / "build" / "plugins" / "libdannet_reweight_argmax_host_contracted.so"

#: (N, C, h, w) -> (H, W): DANNet's case scaled down, non-integer up/down scaling, 1x1, identity
CASES = [((1, 19, 17, 30), (135, 240)), ((2, 19, 9, 13), (37, 50)), ((1, 19, 40, 61), (13, 17)),
         ((2, 5, 1, 1), (3, 4)), ((1, 7, 8, 8), (8, 8))]


def logits_for(shape: tuple[int, ...], seed: int, kind: str = "normal") -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(shape).astype(np.float32) * 4
    if kind == "huge":
        z *= np.float32(1e30)
    elif kind == "tiny":
        z *= np.float32(1e-30)
    return z


def torch_reference(z: np.ndarray, w: np.ndarray, size: tuple[int, int], align_corners: bool, mode: int):
    """F.interpolate, then the weights, then argmax: scores and labels."""
    up = F.interpolate(torch.from_numpy(z).double(), size=size, mode="bilinear", align_corners=align_corners)
    weights = torch.from_numpy(w).double().view(1, -1, 1, 1)
    scores = up * weights if mode == 0 else torch.softmax(up, dim=1) * weights
    return scores, scores.argmax(dim=1).numpy()


@pytest.mark.parametrize("case, align_corners, mode, kind", [
    (c, a, m, k) for c, a, m, k in itertools.product(range(len(CASES)), (True, False), (0, 1), ("normal",))
] + [(1, True, 0, "huge"), (1, False, 0, "tiny"), (1, True, 1, "tiny")])
def test_numpy_twin_matches_pytorch(case: int, align_corners: bool, mode: int, kind: str) -> None:
    shape, size = CASES[case]
    z = logits_for(shape, case, kind)
    w = np.random.default_rng(100 + case).uniform(0.7, 1.3, shape[1]).astype(np.float32)
    ours = reweight_argmax(z, w, size, align_corners, mode)
    scores, expected = torch_reference(z, w, size, align_corners, mode)
    assert ours.shape == expected.shape and ours.dtype == np.uint8
    # fp32 vs fp64 may disagree only where the two best classes are within rounding of each other
    top2 = scores.topk(2, dim=1).values
    close = ((top2[:, 0] - top2[:, 1]).abs() <= 1e-5 * top2[:, 0].abs().clamp_min(1e-30)).numpy()
    assert np.all((ours == expected) | close)
    assert (ours == expected).mean() > 0.999


def test_exact_ties_go_to_the_lowest_class() -> None:
    z = np.zeros((1, 6, 3, 4), dtype=np.float32)
    z[:, 2:5] = 7.0  # classes 2, 3, 4 tie everywhere
    labels = reweight_argmax(z, np.ones(6, np.float32), (5, 9))
    assert (labels == 2).all()
    assert (torch.from_numpy(z).argmax(1) == 2).all()  # the rule PyTorch and numpy follow


def test_pack4_roundtrip_and_byte_order() -> None:
    labels = np.arange(2 * 3 * 7, dtype=np.uint8).reshape(2, 3, 7) % 19
    packed = pack4(labels)
    assert packed.shape == (2, 3, 2) and packed.dtype == np.int32
    first = [int(v) for v in labels[0, 0, :4]]
    assert int(packed[0, 0, 0]) == first[0] | first[1] << 8 | first[2] << 16 | first[3] << 24
    np.testing.assert_array_equal(unpack4(packed, 7), labels)


def test_bad_arguments() -> None:
    z = np.zeros((1, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="one weight per class"):
        reweight_argmax(z, np.ones(4), (4, 4))
    with pytest.raises(ValueError, match="positive weights"):
        reweight_argmax(z, np.array([1.0, 0.0, 1.0]), (4, 4), mode=1)


def load_host_library(path: Path) -> ctypes.CDLL:
    if not path.is_file():
        pytest.skip(f"{path} not built (make test-cmake builds it)")
    lib = ctypes.CDLL(str(path))
    lib.dannetReweightArgmaxHost.restype = ctypes.c_int
    lib.dannetReweightArgmaxHostConfidence.restype = ctypes.c_int
    lib.dannetReweightArgmaxLogWeights.restype = None
    lib.dannetReweightArgmaxSizeLimits.restype = None
    return lib


@pytest.fixture(scope="module")
def host_library() -> ctypes.CDLL:
    return load_host_library(HOST_LIBRARY)


def cpu_runs_fma() -> bool:
    """Whether this CPU has FMA instructions (ARM64 always; x86 lists the flag in /proc/cpuinfo)."""
    if platform.machine() != "x86_64":
        return True
    cpuinfo = Path("/proc/cpuinfo")
    flags = re.search(r"^flags\s*:(.*)$", cpuinfo.read_text(), re.M) if cpuinfo.is_file() else None
    return flags is not None and "fma" in flags.group(1).split()


@pytest.fixture(scope="module")
def contracted_host_library() -> ctypes.CDLL:
    lib = load_host_library(CONTRACTED_HOST_LIBRARY)
    if not cpu_runs_fma():
        pytest.skip("this CPU has no FMA instructions: the -mfma build cannot run here")
    return lib


def host_reference(lib: ctypes.CDLL, z: np.ndarray, w: np.ndarray, size: tuple[int, int], align_corners: bool,
                   mode: int, confidence: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The C++ host reference's labels, or with ``confidence`` its labels and confidence levels."""
    z, w = np.ascontiguousarray(z, np.float32), np.ascontiguousarray(w, np.float32)
    outputs = [np.zeros((z.shape[0], *size), dtype=np.uint8) for _ in range(2 if confidence else 1)]
    ptr = ctypes.POINTER(ctypes.c_float)
    entry = lib.dannetReweightArgmaxHostConfidence if confidence else lib.dannetReweightArgmaxHost
    status = entry(z.ctypes.data_as(ptr), *map(ctypes.c_int, (*z.shape, *size)), w.ctypes.data_as(ptr),
                   ctypes.c_int(int(align_corners)), ctypes.c_int(mode),
                   *(out.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)) for out in outputs))
    assert status == 0
    return tuple(outputs) if confidence else outputs[0]


def assert_levels_agree(got: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    """Confidence levels as close as the op spec demands of two implementations: none more than one level
    apart, and at most one in a thousand (at least one) apart at all. Exponentials that differ in their
    last bits move a level only where 255 p + 0.5 lies that close to an integer; a systematic error (a
    rounding rule, a missing rescale) moves many (the C++ tests' testSupport::compareLevels)."""
    assert got.shape == expected.shape, what
    difference = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    assert difference.max(initial=0) <= 1, f"{what}: levels {difference.max()} apart"
    assert np.count_nonzero(difference) <= max(1, difference.size // 1000), \
        f"{what}: {np.count_nonzero(difference)} of {difference.size} levels one apart"


@pytest.mark.parametrize("align_corners, mode", list(itertools.product((True, False), (0, 1))))
def test_cpp_host_reference_equals_numpy_twin_bit_for_bit(host_library: ctypes.CDLL, align_corners: bool,
                                                           mode: int) -> None:
    for i, (shape, size) in enumerate(CASES):
        z = logits_for(shape, 10 + i)
        w = np.random.default_rng(i).uniform(0.7, 1.3, shape[1]).astype(np.float32)
        np.testing.assert_array_equal(host_reference(host_library, z, w, size, align_corners, mode),
                                      reweight_argmax(z, w, size, align_corners, mode))


@pytest.mark.parametrize("align_corners, mode", list(itertools.product((True, False), (0, 1))))
def test_cpp_host_reference_confidence_within_one_level_of_numpy_definition(host_library: ctypes.CDLL,
                                                                             align_corners: bool, mode: int) -> None:
    """The op's second output: the C++ host reference (the kernel's arithmetic, the host's expf) against
    ``reweight_argmax_confidence`` (NumPy's exp): labels bit for bit, levels within one; one class gives 255."""
    near_ties = ((2, 6, 17, 30), (135, 240))
    for i, (shape, size) in enumerate(CASES + [near_ties, ((1, 1, 3, 4), (5, 7))]):
        z = near_tie_logits(shape, 21) if (shape, size) == near_ties else logits_for(shape, 10 + i)
        w = np.random.default_rng(i).uniform(0.7, 1.3, shape[1]).astype(np.float32)
        labels, levels = host_reference(host_library, z, w, size, align_corners, mode, confidence=True)
        expected_labels, expected_levels = reweight_argmax_confidence(z, w, size, align_corners, mode)
        np.testing.assert_array_equal(labels, expected_labels)
        assert_levels_agree(levels, expected_levels, f"{shape} -> {size}")
        if shape[1] == 1:
            assert (levels == 255).all()  # one class: certain


def test_numpy_confidence_of_non_finite_scores_is_the_kernels(host_library: ctypes.CDLL) -> None:
    """Infinite and NaN logits (an fp16 engine's overflow) get the levels the kernel's ``confidenceLevel``
    gives them, on every platform and without warnings: NaN scores 0, scores that are all -inf 255 (a cast of
    NaN or inf to uint8 would be undefined). 2 x 2 -> 3 x 3, align_corners: the centre interpolates -inf
    with weights 1/2 (-inf), the other pixels also with a weight 0 (-inf x 0: NaN)."""
    z = np.random.default_rng(5).normal(0, 2, (4, 3, 2, 2)).astype(np.float32)
    z[0] = -np.inf                      # every score -inf at the centre, NaN elsewhere
    z[1, 0] = z[1, 1] = np.inf          # two classes +inf: inf - inf in the running sum
    z[2, 1] = np.nan
    w = np.array([0.9, 1.0, 1.1], np.float32)
    for mode in (0, 1):
        labels, levels = host_reference(host_library, z, w, (3, 3), True, mode, confidence=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            expected_labels, expected_levels = reweight_argmax_confidence(z, w, (3, 3), True, mode)
        np.testing.assert_array_equal(expected_labels, labels)
        np.testing.assert_array_equal(expected_levels[:3], levels[:3])
        assert levels[0, 1, 1] == 255 and levels[0, 0, 0] == 0  # both special cases are here
        assert_levels_agree(expected_levels[3], levels[3], f"finite logits, mode {mode}")


def near_tie_logits(shape: tuple[int, int, int, int], seed: int, dtype: type = np.float32) -> np.ndarray:
    """Random logits where class 1 leads by 20 and class 2 is class 1 nudged by at most 1 ulp (of
    ``dtype``) per value: which of the two wins a pixel is decided by the rounding of every operation."""
    z = logits_for(shape, seed).astype(dtype)
    z[:, 1] += dtype(20)  # 5 standard deviations: classes 1 and 2 lead nearly everywhere
    toward = z[:, 1] + np.random.default_rng(seed).integers(-1, 2, z[:, 1].shape).astype(dtype)
    z[:, 2] = np.nextafter(z[:, 1], toward)  # one ulp up, down, or none
    return z


@pytest.mark.parametrize("align_corners, mode", list(itertools.product((True, False), (0, 1))))
def test_host_reference_built_with_fma_contraction_is_unchanged(contracted_host_library: ctypes.CDLL,
                                                                 align_corners: bool, mode: int) -> None:
    """-O3 -ffp-contract=fast -mfma must not change a bit: the shared arithmetic rounds every operation."""
    shape, size = (2, 6, 17, 30), (135, 240)
    z = near_tie_logits(shape, 21)
    w = np.random.default_rng(22).uniform(0.7, 1.3, shape[1]).astype(np.float32)
    w[2] = w[1]
    expected = reweight_argmax(z, w, size, align_corners, mode)
    assert 0.05 < np.mean(expected == 2) < 0.95  # the near ties are there, both ways
    np.testing.assert_array_equal(host_reference(contracted_host_library, z, w, size, align_corners, mode), expected)
    labels, levels = host_reference(contracted_host_library, z, w, size, align_corners, mode, confidence=True)
    expected_labels, expected_levels = reweight_argmax_confidence(z, w, size, align_corners, mode)
    np.testing.assert_array_equal(labels, expected_labels)
    assert_levels_agree(levels, expected_levels, "contracted build")


def correctly_rounded_float32_log(w: np.float32) -> np.float32:
    """The float32 nearest to ln(w), from a 40-digit logarithm (an independent reference)."""
    with localcontext() as ctx:
        ctx.prec = 40
        exact = Decimal(float(w)).ln()
        guess = np.float32(float(exact))
        candidates = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
        return min(candidates, key=lambda c: abs(Decimal(float(c)) - exact))


def many_weights() -> np.ndarray:
    """200k random weights in (0.01, 10) and DANNet's test-time class weights."""
    random = np.random.default_rng(0).uniform(0.01, 10, 200_000).astype(np.float32)
    return np.concatenate([np.asarray(class_weights(0.16), np.float32), random])


def test_log_weights_are_the_correctly_rounded_float32_log() -> None:
    w = many_weights()[:3000]  # the DANNet weights and the first random ones (Decimal logs are slow)
    expected = np.array([correctly_rounded_float32_log(v) for v in w], dtype=np.float32)
    np.testing.assert_array_equal(log_weights(w).view(np.int32), expected.view(np.int32))


def cpp_log_weights(lib: ctypes.CDLL, w: np.ndarray) -> np.ndarray:
    w = np.ascontiguousarray(w, np.float32)
    out = np.empty_like(w)
    ptr = ctypes.POINTER(ctypes.c_float)
    lib.dannetReweightArgmaxLogWeights(w.ctypes.data_as(ptr), ctypes.c_int(w.size), out.ctypes.data_as(ptr))
    return out


def test_cpp_log_weights_equal_python_bit_for_bit(host_library: ctypes.CDLL) -> None:
    """dannet::logWeight (plugin, host reference) == log_weights (twin, NVRTC path, portable tail)."""
    w = many_weights()
    np.testing.assert_array_equal(cpp_log_weights(host_library, w).view(np.int32), log_weights(w).view(np.int32))


def test_portable_tail_adds_the_plugins_log_weights(host_library: ctypes.CDLL) -> None:
    from onnx import TensorProto, helper, numpy_helper

    from export.tails import append_portable_tail

    w = np.asarray(class_weights(0.16), np.float32)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["logits"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 19, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 19, 4, 4])])
    model = append_portable_tail(helper.make_model(graph), w, (8, 8), mode=1)
    added = next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "tail_weights")
    np.testing.assert_array_equal(added.reshape(-1).view(np.int32), cpp_log_weights(host_library, w).view(np.int32))


@pytest.mark.parametrize("reweight", ["logits", "probs"])
def test_non_finite_scores_give_a_defined_confidence_level_in_both_portable_tails(reweight: str) -> None:
    """Logits that overflowed (fp16 networks: inf) make the portable softmax NaN (inf - inf): the ONNX tail must
    not cast that NaN to uint8 (undefined: on this CPU it happens to give 0, a GPU may give anything), and the
    PyTorch program must write what the ONNX tail writes: 0 there, the definition elsewhere."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from export import ExportSpec
    from export.tails import append_portable_tail
    from export.torch_program import FrameToLabels

    w = np.asarray(class_weights(0.16), np.float32)
    logits = np.random.default_rng(0).normal(0, 2, (1, 19, 4, 4)).astype(np.float32)
    logits[0, 3, 0, 0] = np.inf  # one pixel: one class overflowed
    logits[0, 5, 3, 3] = logits[0, 6, 3, 3] = np.inf  # another: two
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["logits"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 19, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 19, 4, 4])])
    model = append_portable_tail(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), w, (8, 8),
                                 mode=int(reweight == "probs"), confidence=True)
    cast = next(node for node in model.graph.node if node.output[0] == "confidence")
    model.graph.output.append(helper.make_tensor_value_info(cast.input[0], TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    confidence, cast_from = session.run(["confidence", cast.input[0]], {"x": logits})
    assert not np.isnan(cast_from).any()
    program = FrameToLabels(torch.nn.Identity(), ExportSpec(output_size=(8, 8), reweight=reweight, confidence=True), w)
    np.testing.assert_array_equal(program(torch.from_numpy(logits))[1].numpy(), confidence)
    finite = confidence > 0  # the pixels the infinities did not reach (NaN became 0 before the cast)
    _, twin = reweight_argmax_confidence(logits, w, (8, 8), True, int(reweight == "probs"))
    assert finite.any() and np.abs(confidence[finite].astype(int) - twin[finite]).max() <= 1


def test_the_nvrtc_launchers_size_limits_are_the_plugins(host_library: ctypes.CDLL) -> None:
    """The launcher's copy of the limits (Python cannot include the header) equals the header's, as compiled."""
    from runtime.reweight_argmax_cuda import LIMITS

    largest = (ctypes.c_int64 * 5)()
    host_library.dannetReweightArgmaxSizeLimits(largest)
    assert list(largest) == list(LIMITS.values())


@pytest.mark.parametrize("shape, out_size, refused", [
    ((65535, 1, 1, 1), (1, 1), None), ((65536, 1, 1, 1), (1, 1), "batch 65536"),
    ((1, 1, 2**20, 2047), (1, 1), None), ((1, 2, 2**20, 1024), (1, 1), "logits per image 2147483648"),
    ((1, 1, 1, 2**20 + 1), (1, 1), "logits height/width 1048577"),
    ((1, 1, 1, 1), (524280, 2**31 - 128), None), ((1, 1, 1, 1), (524281, 1), "out_height 524281"),
    ((1, 1, 1, 1), (1, 2**31 - 127), "out_width 2147483521")])
def test_nvrtc_launch_parameters_keep_to_the_kernels_size_limits(shape, out_size, refused: str | None) -> None:
    """The GPU tests' launcher refuses what the plugin refuses (the op spec's size limits, at and one past each),
    rather than launching a grid CUDA rejects or an index that overflows."""
    from runtime.reweight_argmax_cuda import make_params

    weights = np.ones(shape[1], np.float32)
    if refused is None:
        assert make_params(shape, weights, out_size, True, 0).batch == shape[0]
    else:
        with pytest.raises(ValueError, match=f"^{refused} exceeds the kernel's limit"):
            make_params(shape, weights, out_size, True, 0)


def mode1_tie_case(weights: np.ndarray, weight_one_first: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits (1 x C x 1 x k), class weights and the expected labels of k pixels. Pixel i ties
    exactly, after mode 1's re-weighting, between a class of weight w_i and logit 0 (score log w_i)
    and the class of weight 1 and logit float32(ln w_i), correctly rounded (score the same): the lower
    class wins. A log weight 1 ulp too high makes the w_i class win when the weight-1 class is the
    lower one (``weight_one_first``), 1 ulp too low the weight-1 class in the other layout."""
    k = len(weights)
    one = 0 if weight_one_first else k  # the class of weight 1; the others are w_0 .. w_k-1 in order
    weighted = np.arange(1, k + 1) if weight_one_first else np.arange(k)
    classes = np.ones(k + 1, dtype=np.float32)
    classes[weighted] = weights
    logits = np.full((1, k + 1, 1, k), -1e30, dtype=np.float32)
    for i, w in enumerate(weights):
        logits[0, weighted[i], 0, i] = 0.0
        logits[0, one, 0, i] = correctly_rounded_float32_log(w)
    expected = np.minimum(weighted, one).astype(np.uint8).reshape(1, 1, k)
    return logits, classes, expected


def float32_logs_are_off(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which weights C's logf, and which NumPy's float32 log, get 1 ulp away from log_weights."""
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.logf.restype, libm.logf.argtypes = ctypes.c_float, [ctypes.c_float]
    logf = np.array([libm.logf(float(v)) for v in w], dtype=np.float32)
    return logf != log_weights(w), np.log(w) != log_weights(w)


@pytest.mark.parametrize("weight_one_first", [True, False])
def test_mode1_exact_tie_after_reweighting(host_library: ctypes.CDLL, weight_one_first: bool) -> None:
    """The C++ host reference and the NumPy twin give the tie to the lower class, for DANNet's weights
    and for weights where logf or NumPy's float32 log is 1 ulp off."""
    random = np.random.default_rng(1).uniform(0.01, 10, 20_000).astype(np.float32)
    logf_off, numpy_off = float32_logs_are_off(random)
    weights = np.concatenate([np.asarray(class_weights(0.16), np.float32), random[logf_off][:22],
                              random[numpy_off][:22]])
    assert logf_off.sum() >= 22 and numpy_off.sum() >= 22
    logits, classes, expected = mode1_tie_case(weights, weight_one_first)
    size = logits.shape[2:]
    for align_corners in (True, False):
        np.testing.assert_array_equal(reweight_argmax(logits, classes, size, align_corners, mode=1), expected)
        np.testing.assert_array_equal(host_reference(host_library, logits, classes, size, align_corners, mode=1),
                                      expected)


@pytest.mark.parametrize("arch", ["sm_75", "sm_87", "sm_90"])
def test_kernel_compiles_with_nvrtc(arch: str) -> None:
    """The kernel source compiles on its own, as the GPU tests and the NVRTC path load it: all twelve kernels,
    labels only and with confidence, under the names the launcher asks for."""
    pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-python not installed")
    from runtime.reweight_argmax_cuda import FORMATS, compile_kernel, kernel_name

    try:
        cubin = compile_kernel(arch)
    except (RuntimeError, OSError) as e:
        if "nvrtc" in str(e).lower() and "not found" in str(e).lower():
            pytest.skip(f"NVRTC library not available: {e}")
        raise
    assert len(cubin) > 10_000
    names = {kernel_name(fp16, label_format, confidence)
             for fp16, label_format, confidence in itertools.product((False, True), FORMATS, (False, True))}
    assert len(names) == 12 and "reweightArgmaxConfidenceF16Packed4" in names
    for name in names:
        assert name.encode() + b"\0" in cubin, name


def test_plugin_library_missing_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(PluginLibraryError, match="cmake -S . -B build"):
        find_plugin_library(tmp_path / "libnothing.so")


def read_output(raw: np.ndarray, label_format: str, shape: tuple[int, int, int]) -> np.ndarray:
    """The value of each pixel (N x H x W) in a kernel output's bytes, stored in ``label_format``."""
    n, h, width = shape
    if label_format == "int32":
        return raw.view(np.int32).reshape(n, h, width)
    if label_format == "pack4":
        return unpack4(raw.view(np.int32).reshape(n, h, -1), width)
    return raw.reshape(n, h, width)


def launch_on_gpu(runner, z: np.ndarray, fp16: bool, label_format: str, params, shape: tuple[int, int, int],
                  confidence: bool) -> list[np.ndarray]:
    """Runs the kernel on ``z`` (copied to the GPU): its labels, and with ``confidence`` its levels, N x H x W."""
    from cuda.bindings import driver

    n, h, width = shape
    nbytes = {"int32": n * h * width * 4, "pack4": n * h * ((width + 3) // 4) * 4, "uint8": n * h * width}[label_format]
    _, d_in = driver.cuMemAlloc(z.nbytes)
    d_outs = [driver.cuMemAlloc(nbytes)[1] for _ in range(2 if confidence else 1)]
    driver.cuMemcpyHtoD(d_in, np.ascontiguousarray(z).ctypes.data, z.nbytes)
    runner.launch(int(d_in), fp16, int(d_outs[0]), label_format, params,
                  confidence_ptr=int(d_outs[1]) if confidence else None)
    driver.cuCtxSynchronize()
    outputs = []
    for d_out in d_outs:
        raw = np.empty(nbytes, dtype=np.uint8)
        driver.cuMemcpyDtoH(raw.ctypes.data, d_out, nbytes)
        driver.cuMemFree(d_out)
        outputs.append(read_output(raw, label_format, shape))
    driver.cuMemFree(d_in)
    return outputs


def gpu_cases(fp16: bool):
    """(logits, weights, size, align_corners, mode) for the GPU tests: ``CASES``, DANNet at 1080p and near
    ties (a fused multiply-add in the device code changes labels there), both coordinate rules and modes."""
    cases = CASES + [((2, 19, 68, 120), (1080, 1920))]
    near_ties = ((2, 6, 17, 30), (135, 240))
    dtype = np.float16 if fp16 else np.float32
    for (shape, size), align_corners, mode in itertools.product(cases + [near_ties], (True, False), (0, 1)):
        z = near_tie_logits(shape, 7, dtype) if (shape, size) == near_ties else logits_for(shape, 7).astype(dtype)
        w = np.random.default_rng(3).uniform(0.7, 1.3, shape[1]).astype(np.float32)
        w[2] = w[1]
        yield z, w, size, align_corners, mode


@functools.lru_cache(maxsize=None)
def gpu_references(fp16: bool, confidence: bool) -> tuple:
    """The NumPy twin's answer to every ``gpu_cases(fp16)`` case, computed once: at 1080x1920 each takes seconds
    on the CPU, and the GPU tests ask for it once per label format, on a machine whose minutes are scarce."""
    twin = reweight_argmax_confidence if confidence else reweight_argmax
    return tuple(twin(z.astype(np.float32), w, size, align_corners, mode)
                 for z, w, size, align_corners, mode in gpu_cases(fp16))


@pytest.mark.gpu
@pytest.mark.parametrize("label_format", ["int32", "pack4", "uint8"])
@pytest.mark.parametrize("fp16", [False, True])
def test_kernel_on_gpu_equals_numpy_twin_bit_for_bit(label_format: str, fp16: bool) -> None:
    from runtime.reweight_argmax_cuda import CudaReweightArgmax, make_params

    runner = CudaReweightArgmax()
    for (z, w, size, align_corners, mode), expected in zip(gpu_cases(fp16), gpu_references(fp16, False)):
        got, = launch_on_gpu(runner, z, fp16, label_format, make_params(z.shape, w, size, align_corners, mode),
                             expected.shape, confidence=False)
        np.testing.assert_array_equal(got, expected, err_msg=f"{z.shape}->{size} align {align_corners} mode {mode}")


@pytest.mark.gpu
@pytest.mark.parametrize("label_format", ["int32", "pack4", "uint8"])
@pytest.mark.parametrize("fp16", [False, True])
def test_kernel_confidence_on_gpu_within_one_level_of_numpy_definition(label_format: str, fp16: bool) -> None:
    """The confidence kernels: labels bit for bit, levels within one of ``reweight_argmax_confidence``
    (CUDA's expf against NumPy's exp)."""
    from runtime.reweight_argmax_cuda import CudaReweightArgmax, make_params

    runner = CudaReweightArgmax()
    for (z, w, size, align_corners, mode), expected in zip(gpu_cases(fp16), gpu_references(fp16, True)):
        what = f"{z.shape}->{size} align {align_corners} mode {mode}"
        expected_labels, expected_levels = expected
        labels, levels = launch_on_gpu(runner, z, fp16, label_format,
                                       make_params(z.shape, w, size, align_corners, mode), expected_labels.shape,
                                       confidence=True)
        np.testing.assert_array_equal(labels, expected_labels, err_msg=what)
        assert_levels_agree(levels, expected_levels, what)


def test_kernel_benchmark_table_shows_what_confidence_costs() -> None:
    """``dannet-bench kernel``'s result table (its CPU side): per case the labels-only and labels + confidence
    times, their ratio, whether the labels stayed the same, and the confidence's agreement."""
    from benchmarks.kernel_bench import table

    row = {"case": "1x19x68x120 -> 1080x1920", "pytorch_ms": 2.0, "kernel_ms": 0.5, "kernel_confidence_ms": 0.625,
           "confidence_cost": 1.25, "speedup": 4.0, "kernel_gbs": 1500.0, "agree": 0.99995,
           "confidence_same_labels": True, "confidence_within_one": 0.99987, "confidence_max_level_error": 1.0}
    header, line = table([row], bandwidth=3000.0)
    for column in ("PyTorch ms", "kernel ms", "+conf ms", "conf cost", "conf labels", "conf +-1"):
        assert column in header
    assert line.split() == ["1x19x68x120", "->", "1080x1920", "2.000", "0.500", "4.0x", "1500.0", "50%", "99.9950%",
                            "0.625", "1.25x", "same", "99.987%"]
    changed = table([{**row, "confidence_same_labels": False}], bandwidth=None)[1].split()
    assert changed[7] == "-" and "DIFFERENT" in changed


@pytest.mark.tensorrt
@pytest.mark.parametrize("confidence", [0, 1])
@pytest.mark.parametrize("pack", [0, 1])
def test_plugin_in_a_tensorrt_engine_and_after_a_serialisation_round_trip(pack: int, confidence: int) -> None:
    import tensorrt as trt
    from cuda.bindings import driver

    from runtime.plugin_library import load_plugin_library

    load_plugin_library()
    shape, size = (1, 19, 17, 30), (135, 242)
    z = logits_for(shape, 5)
    w = np.random.default_rng(5).uniform(0.7, 1.3, 19).astype(np.float32)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    logits = network.add_input("logits", trt.float32, shape)
    creator = trt.get_plugin_registry().get_creator("ReweightArgmax", "1", "dannet")
    fields = trt.PluginFieldCollection([
        trt.PluginField("weights", w, trt.PluginFieldType.FLOAT32),
        *(trt.PluginField(name, np.array([value], np.int32), trt.PluginFieldType.INT32)
          for name, value in (("out_height", size[0]), ("out_width", size[1]), ("align_corners", 1),
                              ("pack4", pack), ("mode", 0), ("confidence", confidence)))])
    plugin = creator.create_plugin("reweight_argmax", fields, trt.TensorRTPhase.BUILD)
    layer = network.add_plugin_v3([logits], [], plugin)
    names = ["labels", "confidence"][:1 + confidence]
    for i, name in enumerate(names):
        layer.get_output(i).name = name
        network.mark_output(layer.get_output(i))
    serialized = builder.build_serialized_network(network, builder.create_builder_config())
    assert serialized is not None
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)  # the round trip
    context = engine.create_execution_context()
    out_width = (size[1] + 3) // 4 if pack else size[1]
    nbytes = size[0] * out_width * 4
    _, d_in = driver.cuMemAlloc(z.nbytes)
    d_outs = [driver.cuMemAlloc(nbytes)[1] for _ in names]
    driver.cuMemcpyHtoD(d_in, z.ctypes.data, z.nbytes)
    context.set_tensor_address("logits", int(d_in))
    for name, d_out in zip(names, d_outs):
        context.set_tensor_address(name, int(d_out))
    _, stream = driver.cuStreamCreate(0)
    assert context.execute_async_v3(int(stream))
    driver.cuStreamSynchronize(stream)
    outputs = []
    for d_out in d_outs:
        raw = np.empty(size[0] * out_width, dtype=np.int32)
        driver.cuMemcpyDtoH(raw.ctypes.data, d_out, nbytes)
        outputs.append(unpack4(raw.reshape(1, size[0], out_width), size[1]) if pack else raw.reshape(1, *size))
    expected_labels, expected_levels = reweight_argmax_confidence(z, w, size, True, 0)
    np.testing.assert_array_equal(outputs[0], expected_labels)
    if confidence:
        assert_levels_agree(outputs[1], expected_levels, "the engine's confidence output")
