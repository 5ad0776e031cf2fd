"""``dannet-export engine`` where things go wrong around the build, on CPU through the TensorRT stand-in
(tests/tensorrt_standin.py): a timing cache TensorRT refuses, a sidecar that cannot be renamed into place, a
corrupt sidecar, and bad flag values. The graphs are a few nodes with the ``dannet.*`` metadata the builder reads,
so that no test waits for a model export.
"""
from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from tensorrt_standin import GPU_NAME, StandIn, timing_cache_header

from export import build_engine, decide
from export.cli import main as export_main
from runtime.backends import BackendError, TensorRTBackend
from runtime.engine_sidecar import Sidecar, current_machine, sidecar_path
from runtime.errors import OutputError

SIZE = [8, 8]


def tiny_graph(path: Path, checkpoint: str, dynamic: bool = False) -> Path:
    """A graph as ``dannet-export onnx`` shapes it (uint8 NHWC ``frame`` in, uint8 ``labels`` out: here the argmax
    over the colour channels), static at 8x8 or ``dynamic`` (batch, height and width); ``checkpoint`` goes into the
    metadata, so two names give two ONNX files."""
    frame, labels = (["N", "H", "W", 3], ["N", "H", "W"]) if dynamic else ([1, *SIZE, 3], [1, *SIZE])
    nodes = [helper.make_node("Cast", ["frame"], ["pixels"], to=TensorProto.FLOAT),
             helper.make_node("ArgMax", ["pixels"], ["channel"], axis=3, keepdims=0),
             helper.make_node("Cast", ["channel"], ["channel_f"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["channel_f"], ["labels"], to=TensorProto.UINT8)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("frame", TensorProto.UINT8, frame)],
                              [helper.make_tensor_value_info("labels", TensorProto.UINT8, labels)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"dannet.input": json.dumps({"size": None if dynamic else SIZE}),
                                   "dannet.output": json.dumps({"name": "labels", "size": SIZE, "format": "uint8"}),
                                   "dannet.tail": "portable", "dannet.precision": "fp32",
                                   "dannet.checkpoint_sha256": checkpoint})
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch) -> StandIn:
    fresh = StandIn().install(monkeypatch)
    yield fresh
    assert not fresh.log, f"TensorRT would have logged errors: {fresh.log}"


def quiet(_: str) -> None:
    """``say`` for builds whose progress lines the test does not read."""


def test_a_timing_cache_from_another_gpu_is_replaced_by_one_this_build_filled(standin: StandIn, tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture) -> None:
    """TensorRT refuses the cache (set_timing_cache returns False): one warning line naming the file, then a
    fresh cache that the build fills replaces it, so the next build here uses it without a warning."""
    import tensorrt as trt

    graph, out, cache = tiny_graph(tmp_path / "a.onnx", "a"), tmp_path / "m.engine", tmp_path / "timing.cache"
    cache.write_bytes(timing_cache_header("Another GPU") + b"timings for another graph\n")

    def accepted_here(blob: bytes) -> bool:
        config = trt.Builder(trt.Logger(trt.Logger.WARNING)).create_builder_config()
        return config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)

    assert not accepted_here(cache.read_bytes())  # the premise: TensorRT would refuse this cache here
    build_engine(graph, out, timing_cache=str(cache), say=quiet)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: --timing-cache ") and str(cache) in err, err
    learned = cache.read_bytes()
    empty = trt.Builder(trt.Logger(trt.Logger.WARNING)).create_builder_config().create_timing_cache(b"").serialize()
    assert accepted_here(learned) and len(learned) > len(empty)  # this GPU's cache, with this build's timings

    build_engine(graph, out, timing_cache=str(cache), rebuild="always", say=quiet)
    assert capsys.readouterr().err == ""  # taken as it is now
    assert accepted_here(cache.read_bytes())


@pytest.mark.parametrize("failing", ["replace sidecar", "replace engine", "unlink sidecar"])
def test_a_failed_rename_never_leaves_an_engine_beside_another_engines_sidecar(failing: str, standin: StandIn,
                                                                               tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine built from B replaces the one built from A, and renaming its sidecar into place fails (or renaming
    the engine, or removing A's sidecar). What is left is A's pair as it was, or an engine without a sidecar, so
    `engine --onnx A` never reuses an engine built from B; the error says in one line what is left."""
    a, b = tiny_graph(tmp_path / "a.onnx", "a"), tiny_graph(tmp_path / "b.onnx", "b")
    out = tmp_path / "m.engine"
    sidecar = sidecar_path(out)
    build_engine(a, out, say=quiet)
    before = {path.name: path.read_bytes() for path in (out, sidecar)}
    operation, file = failing.split()
    target = {"sidecar": sidecar, "engine": out}[file]
    real = getattr(os, operation)

    def failing_for_target(*paths: str | os.PathLike, **kwargs) -> None:  # os.replace(src, dst), os.unlink(path)
        if Path(paths[-1]) == target:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(*paths, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, operation, failing_for_target)
        with pytest.raises(OutputError) as raised:
            build_engine(b, out, say=quiet)
    message = str(raised.value)
    assert message.startswith(f"{target}: cannot write (Input/output error); ") and "\n" not in message
    left = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith(out.name)}
    assert left == before or sidecar.name not in left, sorted(left)  # the old pair, or an engine alone
    assert all(not name.endswith(".partial") for name in left)
    assert ("is unchanged" in message) == (left == before), message  # what it says is left is what is left

    machine = current_machine()
    if left != before:
        assert decide(out, a, machine).action == "build"
        with pytest.raises(BackendError, match="no sidecar"):
            TensorRTBackend(out)
    said: list[str] = []
    build_engine(a, out, say=said.append)  # --rebuild auto: a working pair for A again
    assert decide(out, a, machine).action == "reuse"
    assert said[0] == (f"{out}: up to date for {GPU_NAME} / TensorRT {machine.tensorrt_version}; reusing it"
                       if left == before else f"{out}: rebuilding it: no sidecar {sidecar.name}: its origin is unknown")


def test_a_corrupt_sidecar_is_rebuilt_under_auto_refused_under_never_and_by_the_runtime(
        standin: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    graph, out = tiny_graph(tmp_path / "a.onnx", "a"), tmp_path / "m.engine"
    sidecar = sidecar_path(out)
    build_engine(graph, out, say=quiet)

    def engine_command(*flags: str) -> tuple[int, str, str]:
        code = export_main(["engine", "--onnx", str(graph), "--out", str(out), *flags])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    intact = sidecar.read_bytes()
    sidecar.write_bytes(intact[:40])  # cut short, as by a full disk or another tool's crash
    code, said, err = engine_command()  # --rebuild auto: as with no sidecar, the engine's origin is unknown
    assert code == 0 and err == "", err
    first = said.splitlines()[0]
    assert first.startswith(f"{out}: rebuilding it: unreadable sidecar {sidecar.name} (") and \
        first.endswith("): its origin is unknown"), first
    assert decide(out, graph, current_machine()).action == "reuse"
    assert TensorRTBackend(out).info.checkpoint_sha256 == "a"

    sidecar.write_bytes(intact[:40])
    code, said, err = engine_command("--rebuild", "never")
    assert code == 2 and err.count("\n") == 1 and "refusing a foreign engine: unreadable sidecar" in err, err
    with pytest.raises(BackendError, match=rf"^{re.escape(str(sidecar))}: unreadable engine sidecar \(.*\); "
                                           "rebuild the engine$"):
        TensorRTBackend(out)


@pytest.mark.parametrize("flag, value, expected", [
    ("--min-shape", "1x64", "expected NxHxWx3"),
    ("--opt-shape", "axbxcx3", "expected NxHxWx3"),
    ("--max-shape", "1x64x64x4", "expected NxHxWx3"),
    ("--max-shape", "0x64x64x3", "expected NxHxWx3 with positive sizes"),
    ("--workspace-gb", "0", "expected a number in (0, 1024]"),
    ("--dla-core", "8", "expected an integer in [0, 7]"),
    ("--rebuild", "sometimes", "invalid choice"),
])
def test_a_bad_engine_flag_value_is_one_line_naming_the_flag(flag: str, value: str, expected: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    """Through dannet-export's main: exit 2 and one line naming the flag and the value (no TensorRT needed)."""
    shapes = {"--min-shape": "1x64x64x3", "--opt-shape": "1x64x64x3", "--max-shape": "1x64x64x3"}
    argv = ["engine", "--onnx", str(tmp_path / "a.onnx"), "--out", str(tmp_path / "m.engine"),
            *[text for key, given in {**shapes, flag: value}.items() for text in (key, given)]]
    with pytest.raises(SystemExit) as raised:
        export_main(argv)
    err = capsys.readouterr().err
    assert raised.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"dannet-export engine: error: argument {flag}: ") and expected in err and value in err, err


def test_shape_flags_reach_the_builder_as_the_profile(standin: StandIn, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """Read at parse time now, the three shapes still become the engine's optimisation profile."""
    graph = tiny_graph(tmp_path / "dynamic.onnx", "a", dynamic=True)
    out = tmp_path / "m.engine"
    profile = {"min": [1, 32, 32, 3], "opt": [1, 32, 64, 3], "max": [2, 64, 64, 3]}
    flags = [text for key, shape in profile.items() for text in (f"--{key}-shape", "x".join(map(str, shape)))]
    code = export_main(["engine", "--onnx", str(graph), "--out", str(out), *flags])
    assert code == 0, capsys.readouterr().err
    assert Sidecar.read(sidecar_path(out)).profile == profile


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_only_an_fp32_engine_is_built_without_tf32(precision: str, standin: StandIn, tmp_path: Path) -> None:
    """TensorRT turns TF32 on by default (NvInfer.h), which rounds fp32 convs' inputs to 10-bit mantissas on
    Ampere and newer GPUs: an engine recorded as fp32, the reference FP16 and INT8 are compared with, must not;
    an FP16 (or INT8) engine keeps the default for the layers it leaves in fp32."""
    graph = tiny_graph(tmp_path / "a.onnx", "a")
    model = onnx.load(str(graph))
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "dannet.precision": precision})
    onnx.save(model, str(graph))
    assert export_main(["engine", "--onnx", str(graph), "--out", str(tmp_path / "m.engine")]) == 0
    config, = standin.built_with
    assert config.get_flag(standin.tensorrt.BuilderFlag.TF32) == (precision != "fp32")
