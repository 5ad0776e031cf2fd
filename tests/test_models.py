"""The DANNet networks: exact reference layouts, output strides, and forward passes checked against
an independent functional implementation written from the reference description (not our modules)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import reference_layout
from train.checkpoint import load_weights
from train.models import Discriminator, RelightNet, build_segmenter

LAYOUT_FILES = {"pspnet": "pspnet", "deeplab": "deeplab", "refinenet": "refinenet"}


def layout_of(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


@pytest.mark.parametrize("arch", ["pspnet", "deeplab", "refinenet"])
def test_segmenter_layout_equals_reference(arch: str) -> None:
    assert layout_of(build_segmenter(arch)) == reference_layout(LAYOUT_FILES[arch])


def test_the_command_lines_offer_every_architecture_and_no_other() -> None:
    """``--arch`` is offered without importing torch (``runtime.arguments.ARCHITECTURES``), so its names are
    written there a second time; they must be the networks ``build_segmenter`` builds."""
    from runtime.arguments import ARCHITECTURES
    from train.models import SEGMENTERS

    assert sorted(ARCHITECTURES) == sorted(SEGMENTERS)


def test_relight_and_discriminator_layouts_equal_reference() -> None:
    assert layout_of(RelightNet()) == reference_layout("relight")
    assert layout_of(Discriminator(19)) == reference_layout("discriminator")


def random_state_dict(layout: list[tuple[str, tuple[int, ...]]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A 'released-style' state dict: the reference keys with random but sane values."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in layout:
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            sd[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean") or key.endswith(".bias"):
            sd[key] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # BN weight
            sd[key] = 0.5 + 0.5 * torch.rand(shape, generator=g)
        else:  # conv weight, He-scaled so activations stay finite through 100 layers
            fan_in = math.prod(shape[1:])
            sd[key] = torch.randn(shape, generator=g) * math.sqrt(1.0 / fan_in)
    return sd


def conv_out(n: int, k: int, s: int, p: int, ceil: bool = False) -> int:
    v = (n + 2 * p - k) / s + 1
    return math.ceil(v) if ceil else math.floor(v)


def expected_logit_size(arch: str, n: int) -> int:
    n = conv_out(n, 3 if arch == "pspnet" else 7, 2, 1 if arch == "pspnet" else 3)  # stem conv
    n = conv_out(n, 3, 2, 1, ceil=arch != "refinenet")  # max-pool
    if arch == "refinenet":
        return n  # classifier on layer1
    return conv_out(n, 3, 2, 1) if arch == "pspnet" else conv_out(n, 1, 2, 0)  # layer2's stride


@pytest.mark.parametrize("arch", ["pspnet", "deeplab", "refinenet"])
@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_output_shapes_at_odd_sizes(arch: str, backbone: str) -> None:
    model = build_segmenter(arch, num_classes=19, backbone=backbone).eval()
    x = torch.randn(2, 3, 45, 67)
    with torch.no_grad():
        main, aux = model.forward_with_aux(x)
        direct = model(x)
    size = (expected_logit_size(arch, 45), expected_logit_size(arch, 67))
    assert main.shape == (2, 19) + size
    torch.testing.assert_close(direct, main)
    if arch == "refinenet":
        assert aux is None
    else:
        assert aux.shape == (2, 19) + size


def test_resnet101_strides_on_dark_zurich_input() -> None:
    """DESIGN.md: a 540x960 input gives 68x121 logits (ceil-mode pooling)."""
    assert (expected_logit_size("pspnet", 540), expected_logit_size("pspnet", 960)) == (68, 121)
    model = build_segmenter("pspnet", backbone="resnet18").eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 540, 960)).shape[-2:] == (68, 121)


@pytest.mark.parametrize("prefix", ["", "module."])
@pytest.mark.parametrize("arch", ["pspnet", "deeplab", "refinenet"])
def test_released_state_dict_loads(arch: str, prefix: str) -> None:
    sd = random_state_dict(reference_layout(LAYOUT_FILES[arch]))
    model = build_segmenter(arch)
    load_weights(model, {prefix + k: v for k, v in sd.items()}, f"dannet_{arch}.pth")
    for key, value in model.state_dict().items():
        assert torch.equal(value, sd[key]), key


@pytest.mark.parametrize("arch, backbone", [("pspnet", "resnet18"), ("pspnet", "efficientnet_lite0"),
                                            ("deeplab", "resnet18"), ("deeplab", "efficientnet_lite0"),
                                            ("refinenet", "resnet18")])
def test_fresh_segmenter_starts_near_chance(arch: str, backbone: str) -> None:
    """A new network's first training loss is about log(classes), the cross entropy of a uniform guess:
    training starts from "no idea", not from large random logits it must first unlearn."""
    torch.manual_seed(0)
    model = build_segmenter(arch, 19, backbone).train()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    labels = torch.randint(0, 19, (logits.shape[0], *logits.shape[2:]))
    assert F.cross_entropy(logits, labels).item() == pytest.approx(math.log(19), abs=0.25)


def test_eval_mode_is_deterministic() -> None:
    torch.manual_seed(0)
    for model in (build_segmenter("pspnet", backbone="resnet18"), RelightNet(), Discriminator(19)):
        model.eval()
        x = torch.randn(1, 19 if isinstance(model, Discriminator) else 3, 64, 64)
        with torch.no_grad():
            assert torch.equal(model(x), model(x))


# --- independent functional forwards, written from the reference description -----------------

def _bn(x, sd, p):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        training=False, eps=1e-5)


def _conv(x, sd, p, stride=1, padding=0, dilation=1):
    return F.conv2d(x, sd[f"{p}.weight"], sd.get(f"{p}.bias"), stride, padding, dilation)


def _layer(x, sd, name, stride, dilation):
    blocks = len({k.split(".")[1] for k in sd if k.startswith(f"{name}.")})
    for i in range(blocks):
        p, s = f"{name}.{i}", stride if i == 0 else 1
        out = F.relu(_bn(_conv(x, sd, f"{p}.conv1"), sd, f"{p}.bn1"))
        out = F.relu(_bn(_conv(out, sd, f"{p}.conv2", s, dilation, dilation), sd, f"{p}.bn2"))
        out = _bn(_conv(out, sd, f"{p}.conv3"), sd, f"{p}.bn3")
        skip = _bn(_conv(x, sd, f"{p}.downsample.0", s), sd, f"{p}.downsample.1") if f"{p}.downsample.0.weight" in sd else x
        x = F.relu(out + skip)
    return x


def _adaptive_avg_pool(x, bins):
    """Bin i spans rows floor(i*H/b) .. ceil((i+1)*H/b), as PyTorch defines adaptive pooling."""
    h, w = x.shape[-2:]
    rows = []
    for i in range(bins):
        r0, r1 = (i * h) // bins, -((-(i + 1) * h) // bins)
        cols = []
        for j in range(bins):
            c0, c1 = (j * w) // bins, -((-(j + 1) * w) // bins)
            cols.append(x[:, :, r0:r1, c0:c1].mean(dim=(2, 3)))
        rows.append(torch.stack(cols, dim=-1))
    return torch.stack(rows, dim=-2)


def pspnet_reference(sd, x):
    x = F.relu(_bn(_conv(x, sd, "conv1", 2, 1), sd, "bn1"))
    x = F.relu(_bn(_conv(x, sd, "conv2", 1, 1), sd, "bn2"))
    x = F.relu(_bn(_conv(x, sd, "conv3", 1, 1), sd, "bn3"))
    x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
    x = _layer(x, sd, "layer1", 1, 1)
    x = _layer(x, sd, "layer2", 2, 1)
    x = _layer(x, sd, "layer3", 1, 2)
    x = _layer(x, sd, "layer4", 1, 4)
    priors = [F.interpolate(_conv(_adaptive_avg_pool(x, b), sd, f"head.0.stages.{i}.1"), size=x.shape[-2:],
                            mode="bilinear", align_corners=True) for i, b in enumerate((1, 2, 3, 6))]
    y = _bn(_conv(torch.cat(priors + [x], 1), sd, "head.0.bottleneck.0", 1, 1), sd, "head.0.bottleneck.1")
    return _conv(y, sd, "head.1")


def relight_reference(sd, x):
    def pad_conv_bn(y, conv, bn, pad):
        return _bn(_conv(F.pad(y, (pad,) * 4, mode="reflect"), sd, conv), sd, bn)
    y = F.relu(pad_conv_bn(x, "model.1", "model.2", 3))
    y = F.relu(_bn(_conv(y, sd, "model.4", 2, 1), sd, "model.5"))
    y = F.relu(_bn(_conv(y, sd, "model.7", 2, 1), sd, "model.8"))
    for b in (10, 11, 12):
        p = f"model.{b}.conv_block"
        r = F.relu(pad_conv_bn(y, f"{p}.1", f"{p}.2", 1))
        y = y + pad_conv_bn(r, f"{p}.5", f"{p}.6", 1)
    for conv, bn in (("model.13", "model.14"), ("model.16", "model.17")):
        y = F.relu(_bn(F.conv_transpose2d(y, sd[f"{conv}.weight"], None, 2, 1, 1), sd, bn))
    r = torch.tanh(_conv(F.pad(y, (3,) * 4, mode="reflect"), sd, "model.20"))
    return x + r


def test_relight_matches_functional_reference() -> None:
    sd = random_state_dict(reference_layout("relight"), seed=2)
    model = RelightNet().eval()
    load_weights(model, sd, "relight")
    x = torch.randn(2, 3, 36, 52)
    with torch.no_grad():
        torch.testing.assert_close(model(x), relight_reference(sd, x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.residual(x), model(x) - x, rtol=1e-5, atol=1e-6)
        relit, residual = model(x, with_residual=True)
        assert torch.equal(residual, model.residual(x)) and torch.equal(relit, x + residual)


def test_trainable_parameters_equal_the_reference() -> None:
    """The reference freezes the BatchNorm scales and shifts of its DeepLab's residual layers (not
    the stem's): ResNet-101 has 3+4+23+3 Bottlenecks of 3 BNs over 6 x planes channels and one
    downsample BN per layer over 4 x planes, planes 64/128/256/512, so 2 x 6 x (3x64 + 4x128 + 23x256
    + 3x512) + 2 x 4 x (64 + 128 + 256 + 512) = 97,536 + 7,680 = 105,216 frozen values. PSPNet and
    RefineNet train everything (their unused aux head is frozen by the training job, not the net)."""
    deeplab = build_segmenter("deeplab")
    frozen = {n: p.numel() for n, p in deeplab.named_parameters() if not p.requires_grad}
    assert sum(frozen.values()) == 105_216
    assert all(".bn" in n or ".downsample.1." in n for n in frozen) and "bn1.weight" not in frozen
    for arch in ("pspnet", "refinenet"):
        assert all(p.requires_grad for p in build_segmenter(arch, backbone="resnet18").parameters())


def test_discriminator_matches_functional_reference() -> None:
    sd = random_state_dict(reference_layout("discriminator"), seed=3)
    model = Discriminator(19)
    load_weights(model, sd, "disc")
    x = torch.softmax(torch.randn(2, 19, 64, 96), dim=1)
    y = x
    for name, stride in (("conv1", 2), ("conv2", 2), ("conv3", 1), ("conv4", 1)):
        y = F.leaky_relu(_conv(y, sd, name, stride, 1), 0.2)
    y = _conv(y, sd, "classifier", 1, 1)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 1, 13, 21)  # 64 -> 32 -> 16 -> 15 -> 14 -> 13
    torch.testing.assert_close(out, y, rtol=1e-4, atol=1e-5)


def test_deeplab_uses_only_two_aspp_branches_like_the_reference() -> None:
    sd = random_state_dict(reference_layout("deeplab"), seed=4)
    model = build_segmenter("deeplab").eval()
    load_weights(model, sd, "deeplab")
    x = torch.randn(1, 3, 41, 41)
    with torch.no_grad():
        _, _, l3, l4 = model.forward_features(x)
        main, aux = model.forward_with_aux(x)
    for head, feats, out in (("layer6", l4, main), ("layer5", l3, aux)):
        expected = sum(_conv(feats, sd, f"{head}.conv2d_list.{i}", 1, d, d) for i, d in ((0, 6), (1, 12)))
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    four = build_segmenter("deeplab", aspp_branches=4).eval()
    load_weights(four, sd, "deeplab")
    with torch.no_grad():
        assert not torch.allclose(four(x), main)


def _rcu(x, sd, p, blocks):
    for i in range(1, blocks + 1):
        out = _conv(F.relu(x), sd, f"{p}.{i}_conv", 1, 1)
        x = x + _conv(F.relu(out), sd, f"{p}.{i}_conv_relu_varout_dimred", 1, 1)
    return x


def _crp(x, sd, p):
    top = x
    for i in range(1, 5):
        top = _conv(F.max_pool2d(top, 5, 1, 2), sd, f"{p}.{i}_outvar_dimred", 1, 1)
        x = x + top
    return x


def refinenet_reference(sd, x):
    up = lambda t, like: F.interpolate(t, size=like.shape[-2:], mode="bilinear", align_corners=True)  # noqa: E731
    x = F.max_pool2d(F.relu(_bn(_conv(x, sd, "conv1", 2, 3), sd, "bn1")), 3, 2, 1)  # floor mode
    l1 = _layer(x, sd, "layer1", 1, 1)
    l2 = _layer(l1, sd, "layer2", 2, 1)
    l3 = _layer(l2, sd, "layer3", 2, 1)
    l4 = _layer(l3, sd, "layer4", 2, 1)
    y = F.relu(_rcu(_conv(l4, sd, "p_ims1d2_outl1_dimred", 1, 1), sd, "adapt_stage1_b.0", 2))
    y = _rcu(_crp(y, sd, "mflow_conv_g1_pool.0"), sd, "mflow_conv_g1_b.0", 3)
    y = _conv(y, sd, "mflow_conv_g1_b3_joint_varout_dimred", 1, 1)
    for path, feats in ((2, l3), (3, l2), (4, l1)):
        z = _rcu(_conv(feats, sd, f"p_ims1d2_outl{path}_dimred", 1, 1), sd, f"adapt_stage{path}_b.0", 2)
        z = F.relu(_conv(z, sd, f"adapt_stage{path}_b2_joint_varout_dimred", 1, 1) + up(y, z))
        y = _rcu(_crp(z, sd, f"mflow_conv_g{path}_pool.0"), sd, f"mflow_conv_g{path}_b.0", 3)
        if path < 4:
            y = _conv(y, sd, f"mflow_conv_g{path}_b3_joint_varout_dimred", 1, 1)
    return _conv(y, sd, "clf_conv", 1, 1)


@pytest.mark.parametrize("arch, reference, seed, size, out_hw", [
    ("pspnet", pspnet_reference, 1, (57, 83), (8, 11)),
    ("refinenet", refinenet_reference, 5, (61, 83), (16, 21)),
])
def test_segmenter_matches_functional_reference(arch: str, reference, seed: int, size: tuple[int, int],
                                                 out_hw: tuple[int, int]) -> None:
    sd = random_state_dict(reference_layout(arch), seed=seed)
    model = build_segmenter(arch).eval()
    load_weights(model, sd, arch)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        ours, ref = model(x), reference(sd, x)
    assert ours.shape == ref.shape == (1, 19, *out_hw)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
