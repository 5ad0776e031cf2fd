"""One adaptation step of our ``reference`` preset against the released DANNet training code.

The released ``train.py`` (github.com/W-zx-Y/DANNet) runs as it is, from the checkout named by
``DANNET_REFERENCE``, for one iteration; only what ties it to its 2020 set-up is replaced at run time:

* CUDA: ``torch.device("cuda")`` is the CPU and ``Tensor.cuda()`` returns the tensor itself;
* its data pipeline (which needs torchvision, scipy and skimage): ``DataLoader`` yields the very
  batches our pipeline produced for our step;
* its initial weights: ``torch.load`` and the relighting/discriminator constructors return copies
  of our networks' initial weights;
* ResNet-101: its networks are built with ResNet-50's block counts (its own classes, fewer blocks),
  as are ours, to keep the CPU time in minutes; inputs are 64x64 (source) and 96x96 -> 64x64
  (target) for its 512 and 960 -> 512;
* in-place copies between overlapping slices of one tensor (its static loss's shifted labels),
  which PyTorch now refuses and PyTorch 1.5 on CUDA ran in an undefined order: each right-hand
  side is read whole before it is written, as NumPy does;
* dropout masks: both sides draw them from a generator seeded by (layer name, call number), so the
  same units are dropped (the released PSPNet also draws masks for its unused aux head, which
  would shift a shared random stream);
* fp64 (one of the two runs): its ``torch.FloatTensor`` (class weights, GAN labels, exposure
  target) makes float64 tensors.

Compared: every loss term, every parameter gradient, the set of trained parameters, every updated
parameter and BatchNorm statistic. In fp64 the two agree to the float32 rounding of our class
weights; in fp32, rounding differences (amplified through BatchNorm backward and in sums that
cancel, such as the last bias of the relighting net) reach ~1e-5 per tensor. Skipped unless
``DANNET_REFERENCE`` is set; a few minutes on 2 CPU cores. Results: BENCHMARKS.md.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import sys
import types
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
from torch import nn

from train.config import load_config
from train.data.synth import generate
from train.engine import setup_env, seed_everything, unwrap

REFERENCE = os.environ.get("DANNET_REFERENCE")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REFERENCE, reason="set DANNET_REFERENCE=/path/to/DANNet (a checkout of "
                                             "github.com/W-zx-Y/DANNet) to compare with the released training code"),
]

SOURCE_CROP, TARGET_CROP = 64, 96  # the released code's --input-size and --input-size-target, scaled down
RESNET50_BLOCKS = [3, 4, 6, 3]
#: our arch name -> the released code's ``--model`` and the constructor train.py calls for it
MODELS = {"pspnet": ("PSPNet", "PSPNet"), "deeplab": ("DeepLab", "Deeplab"), "refinenet": ("RefineNet", "RefineNet")}
#: the released RefineNet calls its dropout ``do``, ours ``dropout``
DROPOUT_NAMES = {"do": "dropout"}
ROLES = ("segmenter", "light", "disc_day", "disc_night")
#: state the released PSPNet updates and we do not: it runs its aux head (``dsn``) although the
#: output is discarded, which moves that head's BatchNorm statistics (nothing depends on them)
UNUSED_AUX_STATE = "segmenter.dsn."
#: largest accepted relative difference per kind (see ``differences``)
TOLERANCE = {torch.float64: {"loss": 1e-6, "gradient": 1e-6, "update": 1e-6},
             torch.float32: {"loss": 1e-5, "gradient": 5e-5, "update": 5e-5}}


@dataclass
class Step:
    """What one side computed in the step: loss terms, gradients applied, state after the update."""

    losses: dict[str, float]
    grads: dict[str, torch.Tensor]
    state: dict[str, torch.Tensor]


def gradients(optimizer: torch.optim.Optimizer, models: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """``role.parameter -> gradient`` of the parameters ``optimizer`` is about to update."""
    names = {id(p): f"{role}.{k}" for role, m in models.items() for k, p in m.named_parameters()}
    return {names[id(p)]: p.grad.detach().clone() for g in optimizer.param_groups for p in g["params"]
            if p.grad is not None}


def state(models: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{role}.{k}": v.detach().clone() for role, m in models.items() for k, v in m.state_dict().items()}


@contextlib.contextmanager
def seeded_dropout(models: dict[str, nn.Module]) -> Iterator[None]:
    """Dropout layers of ``models`` draw their masks from a generator seeded by (layer name, call
    number). Names are looked up at call time: the released ``main()`` builds its networks itself."""
    calls: dict[str, int] = {}

    def forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        names = {id(m): DROPOUT_NAMES.get(n, n) for model in models.values() for n, m in model.named_modules()}
        name = names[id(self)]
        calls[name] = calls.get(name, 0) + 1
        g = torch.Generator().manual_seed(zlib.crc32(f"{name}:{calls[name]}".encode()))
        shape = x.shape if isinstance(self, nn.Dropout) else (*x.shape[:2], 1, 1)
        keep = (torch.rand(shape, generator=g) >= self.p).to(x.dtype)
        return x * keep / (1 - self.p)

    saved = nn.Dropout.forward, nn.Dropout2d.forward
    nn.Dropout.forward = nn.Dropout2d.forward = forward
    try:
        yield
    finally:
        nn.Dropout.forward, nn.Dropout2d.forward = saved


# --- our side ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("data")
    generate(root / "cityscapes", "cityscapes", 4, (128, 256), seed=0)
    generate(root / "darkzurich", "darkzurich", 4, (128, 256), seed=0)
    return root


def images_as(batch: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in batch.items()}


def run_ours(arch: str, data: Path, dtype: torch.dtype) -> tuple[Step, dict[str, torch.Tensor], tuple[dict, dict]]:
    """One step of our reference preset in ``dtype``: the step, the initial state, the batches."""
    from train.dannet import DANNetTask

    values = {"model.arch": arch, "model.backbone": "resnet50", "run.device": "cpu", "run.val_every": 0,
              "data.workers": 0, "data.source.root": data / "cityscapes", "data.target.root": data / "darkzurich",
              "data.source.crop": f"[{SOURCE_CROP}, {SOURCE_CROP}]", "data.target.crop": TARGET_CROP,
              "data.target.resize_to": SOURCE_CROP}
    seed_everything(0)
    task = DANNetTask(load_config("reference", [f"{k}={v}" for k, v in values.items()]), setup_env("cpu"), [], 0)
    models = {role: unwrap(task.models[role]).to(dtype) for role in ROLES}
    task.weights = task.weights.to(dtype)
    initial = state(models)
    batches = images_as(next(task.source), dtype), images_as(next(task.target), dtype)
    task.source, task.target = iter([batches[0]]), iter([batches[1]])
    grads: dict[str, torch.Tensor] = {}
    for optimizer in task.optimizers.values():
        def step(*args: Any, _optimizer=optimizer, _step=optimizer.step, **kwargs: Any) -> Any:
            grads.update(gradients(_optimizer, models))
            return _step(*args, **kwargs)
        optimizer.step = step
    with seeded_dropout(models):
        losses = task.step(0)
    return Step(losses, grads, state(models)), initial, batches


# --- the released code's side ------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference() -> Iterator[types.ModuleType]:
    """The released ``train.py`` as a module (its data-set modules stubbed: batches are injected)."""
    root = Path(REFERENCE).expanduser()
    if not (root / "train.py").is_file() or not (root / "network" / "loss.py").is_file():
        pytest.fail(f"DANNET_REFERENCE={REFERENCE}: expected a DANNet checkout (train.py, network/loss.py)")
    stubs = {name: types.ModuleType(name)
             for name in ("dataset", "dataset.zurich_pair_dataset", "dataset.cityscapes_dataset")}
    stubs["dataset.zurich_pair_dataset"].zurich_pair_DataSet = lambda *a, **k: "target"
    stubs["dataset.cityscapes_dataset"].cityscapesDataSet = lambda *a, **k: "source"
    before = set(sys.modules)
    sys.modules.update(stubs)
    sys.path.insert(0, str(root))
    try:
        spec = importlib.util.spec_from_file_location("dannet_reference_train", root / "train.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:  # the checkout's network/configs packages and the stubs
            del sys.modules[name]


class _TorchOnCPU(types.ModuleType):
    """``torch`` as the released train.py sees it: the CPU for "cuda", our weights for
    ``torch.load``, a recording ``nn.CrossEntropyLoss``; everything else is torch itself."""

    def __init__(self, load: Callable, torch_nn: types.ModuleType) -> None:
        super().__init__("torch")
        self.load, self.nn = load, torch_nn

    @staticmethod
    def device(*_: Any) -> torch.device:
        return torch.device("cpu")

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def _read_before_write(setitem: Callable) -> Callable:
    """``t[a] = t[b]`` with overlapping slices: read ``t[b]`` whole before writing, as NumPy does."""
    def setitem_read_first(self: torch.Tensor, index: Any, value: Any) -> None:
        if isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() == self.untyped_storage().data_ptr():
            value = value.clone()
        setitem(self, index, value)
    return setitem_read_first


class ReleasedRun:
    """The released ``main()`` for one iteration with the replacements of the module docstring;
    records the values its loss modules return and the gradients its optimisers apply."""

    def __init__(self, ref: types.ModuleType, arch: str, initial: dict[str, torch.Tensor],
                 batches: tuple[dict, dict], dtype: torch.dtype) -> None:
        self.ref, self.arch, self.batches, self.dtype = ref, arch, batches, dtype
        self.initial = {role: {k[len(role) + 1:]: v for k, v in initial.items() if k.startswith(f"{role}.")}
                        for role in ROLES}
        self.models: dict[str, nn.Module] = {}
        self.terms: list[tuple[str, float]] = []
        self.grads: dict[str, torch.Tensor] = {}

    def built(self, role: str, module: nn.Module) -> nn.Module:
        """A network main() has just built: given our initial weights."""
        self.models[role] = module.to(self.dtype)
        if role != "segmenter":  # main() loads the segmenter itself, through torch.load
            module.load_state_dict(copy.deepcopy(self.initial[role]))
        return module

    def segmenter(self, *args: Any, **kwargs: Any) -> nn.Module:
        network = sys.modules[f"network.{self.arch}"]
        build = {"pspnet": lambda num_classes: network.ResNet(network.Bottleneck, RESNET50_BLOCKS, num_classes),
                 "deeplab": lambda num_classes: network.ResNetMulti(network.Bottleneck, RESNET50_BLOCKS, num_classes),
                 "refinenet": lambda num_classes, imagenet: network.refinenet(network.Bottleneck, RESNET50_BLOCKS,
                                                                              num_classes=num_classes)}[self.arch]
        return self.built("segmenter", build(*args, **kwargs))

    def recording(self, cls: type, key: str) -> type:
        """``cls`` (a loss module) whose values are appended to ``terms`` under ``key``."""
        terms = self.terms

        class Recording(cls):
            def forward(self, *args: Any) -> torch.Tensor:
                out = super().forward(*args)
                terms.append((key, float(out.detach().double().mean())))
                return out
        return Recording

    def optimizer(self, cls: type) -> type:
        """``cls`` whose ``step`` first records the gradients it applies."""
        recorder = self

        class Recording(cls):
            def step(self, closure=None):  # noqa: ANN001
                recorder.grads.update(gradients(self, recorder.models))
                return super().step(closure)
        return Recording

    def mse(self, out: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        value = self.released_mse(out, label)
        self.terms.append(("mse", float(value.detach().double())))
        return value

    def __call__(self, out: Path, monkeypatch: pytest.MonkeyPatch) -> Step:
        ref = self.ref
        monkeypatch.setattr(ref, MODELS[self.arch][1], self.segmenter)
        monkeypatch.setattr(ref, "LightNet", lambda: self.built("light", sys.modules["network.relighting"].LightNet()))
        discriminators = iter(["disc_day", "disc_night"])  # built as model_D1 (day), then model_D2 (night)
        monkeypatch.setattr(ref, "FCDiscriminator", lambda **k: self.built(
            next(discriminators), sys.modules["network.discriminator"].FCDiscriminator(**k)))
        source, target = self.batches
        loaders = {"source": [(source["image"], source["label"], None, None)],
                   "target": [(target["night"], target["day"], None, None)]}
        monkeypatch.setattr(ref, "data", types.SimpleNamespace(DataLoader=lambda dataset, **_: loaders[dataset]))
        torch_nn = types.ModuleType("torch.nn")
        torch_nn.__getattr__ = lambda name: getattr(nn, name)
        torch_nn.CrossEntropyLoss = self.recording(nn.CrossEntropyLoss, "seg")
        monkeypatch.setattr(ref, "torch", _TorchOnCPU(lambda path: copy.deepcopy(self.initial["segmenter"]),
                                                      torch_nn))
        for name, key in (("StaticLoss", "static"), ("L_TV", "tv"), ("L_exp_z", "exp"), ("SSIM", "ssim")):
            monkeypatch.setattr(ref, name, self.recording(getattr(ref, name), key))
        self.released_mse = ref.weightedMSE
        monkeypatch.setattr(ref, "weightedMSE", self.mse)
        monkeypatch.setattr(ref, "optim", types.SimpleNamespace(SGD=self.optimizer(torch.optim.SGD),
                                                                Adam=self.optimizer(torch.optim.Adam)))
        monkeypatch.setattr(torch.Tensor, "cuda", lambda tensor, *a, **k: tensor)
        monkeypatch.setattr(torch.Tensor, "__setitem__", _read_before_write(torch.Tensor.__setitem__))
        if self.dtype == torch.float64:
            monkeypatch.setattr(torch, "FloatTensor", torch.DoubleTensor)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
        monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
        monkeypatch.setattr(torch.backends.cudnn, "enabled", torch.backends.cudnn.enabled)
        monkeypatch.setattr(sys, "argv", ["train.py", "--model", MODELS[self.arch][0], "--num-steps", "1",
                                          "--input-size", str(SOURCE_CROP), "--input-size-target", str(TARGET_CROP),
                                          "--num-workers", "0", "--snapshot-dir", str(out)])
        with seeded_dropout(self.models):
            ref.main()
        return Step(reference_loss_terms(self.terms), self.grads, state(self.models))


def reference_loss_terms(terms: list[tuple[str, float]]) -> dict[str, float]:
    """Our loss names from the values the released loss modules returned in one iteration.

    Calls in train.py's order: day (TV, SSIM, exposure, D1 adversarial), night (TV, SSIM, exposure,
    D2 adversarial, static), source (TV, SSIM, exposure, CE), then the four least-squares
    discriminator terms D1(source), D2(source), D1(day), D2(night), each halved there. The light
    loss is 10 TV + SSIM + exposure; the generator's total weights the light and adversarial terms
    of the target images by 0.01 and the source's light loss by 1.
    """
    values: dict[str, list[float]] = {}
    for key, value in terms:
        values.setdefault(key, []).append(value)
    light = [10 * tv + ssim + exp for tv, ssim, exp in zip(values["tv"], values["ssim"], values["exp"])]
    adv_day, adv_night, *disc = values["mse"]
    out = {"loss_light_target": light[0] + light[1], "loss_light_source": light[2], "loss_seg": values["seg"][0],
           "loss_static": values["static"][0], "loss_adv": adv_day + adv_night, "loss_d": 0.5 * sum(disc)}
    out["loss_total"] = (0.01 * (light[0] + light[1] + adv_day + adv_night) + out["loss_static"] + out["loss_seg"]
                         + light[2])
    return out


# --- the comparison ------------------------------------------------------------------------------

def relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """``|ours - theirs| / |theirs|`` in the L2 norm (0 when equal)."""
    diff, scale = (ours.double() - theirs.double()).norm().item(), theirs.double().norm().item()
    return 0.0 if diff == 0 else diff / scale if scale > 0 else float("inf")


def update_difference(ours: torch.Tensor, theirs: torch.Tensor, before: torch.Tensor) -> float:
    """How much the two updates of one tensor differ, relative to the update ``theirs - before``,
    beyond the one rounding of each stored value (one unit in the last place of ``theirs``)."""
    spacing = (torch.nextafter(theirs.abs(), torch.tensor(float("inf"), dtype=theirs.dtype)) - theirs.abs()).double()
    diff = max(0.0, (ours.double() - theirs.double()).norm().item() - spacing.norm().item())
    update = (theirs.double() - before.double()).norm().item()
    return 0.0 if diff == 0 else diff / update if update > 0 else float("inf")


def differences(ours: Step, theirs: Step, initial: dict[str, torch.Tensor]) -> dict[str, tuple[float, str]]:
    """The largest relative difference of each kind, and where: loss terms; gradients per tensor
    (L2 norms); updates per tensor (parameters and BatchNorm statistics, see ``update_difference``)."""
    trained_ours, trained_theirs = set(ours.grads), set(theirs.grads)
    assert trained_ours == trained_theirs, (f"trained only by us: {sorted(trained_ours - trained_theirs)[:5]}, only "
                                            f"by the released code: {sorted(trained_theirs - trained_ours)[:5]}")
    updates = []
    for key, value in theirs.state.items():
        if key.startswith(UNUSED_AUX_STATE) and key not in theirs.grads:
            continue
        if value.is_floating_point():
            updates.append((update_difference(ours.state[key], value, initial[key]), key))
        else:
            assert torch.equal(ours.state[key], value), key
    return {"loss": max((abs(ours.losses[k] - v) / abs(v), k) for k, v in theirs.losses.items()),
            "gradient": max((relative(ours.grads[k], g), k) for k, g in theirs.grads.items()),
            "update": max(updates)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("arch", list(MODELS))
def test_one_step_equals_the_released_code(arch: str, dtype: torch.dtype, data: Path, reference: types.ModuleType,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    ours, initial, batches = run_ours(arch, data, dtype)
    theirs = ReleasedRun(reference, arch, initial, batches, dtype)(tmp_path, monkeypatch)
    worst = differences(ours, theirs, initial)
    print(f"\n{arch} {str(dtype)[6:]}: trained tensors {len(theirs.grads)}, largest relative differences: "
          + ", ".join(f"{kind} {diff:.1e} ({where})" for kind, (diff, where) in worst.items()))
    for kind, (diff, where) in worst.items():
        assert diff <= TOLERANCE[dtype][kind], f"{arch}: {kind} differs by {diff:.1e} ({where})"
