"""ReweightArgmax: the NumPy twin against PyTorch, the C++ host reference against the twin (bit for
bit), the kernel compiled by NVRTC (no GPU needed), and on a GPU the kernel against the twin."""
from __future__ import annotations

import ctypes
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runtime.plugin_library import PluginLibraryError, find_plugin_library
from runtime.reweight_argmax import pack4, reweight_argmax, unpack4

REPO = Path(__file__).resolve().parents[1]
HOST_LIBRARY = REPO / "build" / "plugins" / "libdannet_reweight_argmax_host.so"

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


@pytest.fixture(scope="module")
def host_library() -> ctypes.CDLL:
    if not HOST_LIBRARY.is_file():
        pytest.skip(f"{HOST_LIBRARY} not built (make test-cmake builds it)")
    lib = ctypes.CDLL(str(HOST_LIBRARY))
    lib.dannetReweightArgmaxHost.restype = ctypes.c_int
    return lib


def host_reference(lib: ctypes.CDLL, z: np.ndarray, w: np.ndarray, size: tuple[int, int], align_corners: bool,
                   mode: int) -> np.ndarray:
    z, w = np.ascontiguousarray(z, np.float32), np.ascontiguousarray(w, np.float32)
    out = np.zeros((z.shape[0], *size), dtype=np.uint8)
    ptr = ctypes.POINTER(ctypes.c_float)
    status = lib.dannetReweightArgmaxHost(z.ctypes.data_as(ptr), *map(ctypes.c_int, (*z.shape, *size)),
                                          w.ctypes.data_as(ptr), ctypes.c_int(int(align_corners)),
                                          ctypes.c_int(mode), out.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
    assert status == 0
    return out


@pytest.mark.parametrize("align_corners, mode", list(itertools.product((True, False), (0, 1))))
def test_cpp_host_reference_equals_numpy_twin_bit_for_bit(host_library: ctypes.CDLL, align_corners: bool,
                                                           mode: int) -> None:
    for i, (shape, size) in enumerate(CASES):
        z = logits_for(shape, 10 + i)
        w = np.random.default_rng(i).uniform(0.7, 1.3, shape[1]).astype(np.float32)
        np.testing.assert_array_equal(host_reference(host_library, z, w, size, align_corners, mode),
                                      reweight_argmax(z, w, size, align_corners, mode))


@pytest.mark.parametrize("arch", ["sm_75", "sm_87", "sm_90"])
def test_kernel_compiles_with_nvrtc(arch: str) -> None:
    """The kernel source compiles on its own, as the GPU tests and the NVRTC path load it."""
    pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-python not installed")
    from runtime.reweight_argmax_cuda import compile_kernel

    try:
        cubin = compile_kernel(arch)
    except (RuntimeError, OSError) as e:
        if "nvrtc" in str(e).lower() and "not found" in str(e).lower():
            pytest.skip(f"NVRTC library not available: {e}")
        raise
    assert len(cubin) > 10_000
    for name in (b"reweightArgmaxF32I32", b"reweightArgmaxF16Packed4", b"reweightArgmaxF32U8"):
        assert name in cubin


def test_plugin_library_missing_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(PluginLibraryError, match="cmake -S . -B build"):
        find_plugin_library(tmp_path / "libnothing.so")


@pytest.mark.gpu
@pytest.mark.parametrize("label_format", ["int32", "pack4", "uint8"])
@pytest.mark.parametrize("fp16", [False, True])
def test_kernel_on_gpu_equals_numpy_twin_bit_for_bit(label_format: str, fp16: bool) -> None:
    from cuda.bindings import driver

    from runtime.reweight_argmax_cuda import CudaReweightArgmax, make_params

    runner = CudaReweightArgmax()
    cases = CASES + [((2, 19, 68, 120), (1080, 1920))]
    for (shape, size), align_corners, mode in itertools.product(cases, (True, False), (0, 1)):
        z = logits_for(shape, 7)
        if fp16:
            z = z.astype(np.float16)
        w = np.random.default_rng(3).uniform(0.7, 1.3, shape[1]).astype(np.float32)
        expected = reweight_argmax(z.astype(np.float32), w, size, align_corners, mode)
        n, h, wd = expected.shape
        nbytes = {"int32": n * h * wd * 4, "pack4": n * h * ((wd + 3) // 4) * 4, "uint8": n * h * wd}[label_format]
        err, d_in = driver.cuMemAlloc(z.nbytes)
        err, d_out = driver.cuMemAlloc(nbytes)
        driver.cuMemcpyHtoD(d_in, z.ctypes.data, z.nbytes)
        runner.launch(int(d_in), fp16, int(d_out), label_format, make_params(shape, w, size, align_corners, mode))
        raw = np.empty(nbytes, dtype=np.uint8)
        driver.cuCtxSynchronize()
        driver.cuMemcpyDtoH(raw.ctypes.data, d_out, nbytes)
        driver.cuMemFree(d_in)
        driver.cuMemFree(d_out)
        if label_format == "int32":
            got = raw.view(np.int32).reshape(n, h, wd)
        elif label_format == "pack4":
            got = unpack4(raw.view(np.int32).reshape(n, h, -1), wd)
        else:
            got = raw.reshape(n, h, wd)
        np.testing.assert_array_equal(got, expected, err_msg=f"{shape}->{size} align {align_corners} mode {mode}")


@pytest.mark.tensorrt
@pytest.mark.parametrize("pack", [0, 1])
def test_plugin_in_a_tensorrt_engine_and_after_a_serialisation_round_trip(pack: int) -> None:
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
                              ("pack4", pack), ("mode", 0)))])
    plugin = creator.create_plugin("reweight_argmax", fields, trt.TensorRTPhase.BUILD)
    layer = network.add_plugin_v3([logits], [], plugin)
    layer.get_output(0).name = "labels"
    network.mark_output(layer.get_output(0))
    serialized = builder.build_serialized_network(network, builder.create_builder_config())
    assert serialized is not None
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)  # the round trip
    context = engine.create_execution_context()
    out_width = (size[1] + 3) // 4 if pack else size[1]
    nbytes = size[0] * out_width * 4
    _, d_in = driver.cuMemAlloc(z.nbytes)
    _, d_out = driver.cuMemAlloc(nbytes)
    driver.cuMemcpyHtoD(d_in, z.ctypes.data, z.nbytes)
    context.set_tensor_address("logits", int(d_in))
    context.set_tensor_address("labels", int(d_out))
    _, stream = driver.cuStreamCreate(0)
    assert context.execute_async_v3(int(stream))
    driver.cuStreamSynchronize(stream)
    raw = np.empty(size[0] * out_width, dtype=np.int32)
    driver.cuMemcpyDtoH(raw.ctypes.data, d_out, nbytes)
    got = unpack4(raw.reshape(1, size[0], out_width), size[1]) if pack else raw.reshape(1, *size)
    np.testing.assert_array_equal(got, reweight_argmax(z, w, size, True, 0))
