"""Training jobs on tiny synthetic data (CPU, ResNet-18, small crops): the DANNet step, resume,
signals, DDP, and the errors a user can make."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from conftest import last_step_s
from train.checkpoint import load_checkpoint, save_checkpoint
from train.cli import main as train_main
from train.config import ConfigError, load_config
from train.data.synth import generate
from train.engine import (Env, SeededDataset, SeededSampler, latest_checkpoint, setup_env, seed_everything, stream,
                          unwrap)
from train.metrics import ConfusionMeter, confusion_matrix, iou_per_class, mean_iou
from train.models import RelightNet, build_segmenter


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)  # 2 shared cores: one thread per test process
    root = tmp_path_factory.mktemp("data")
    generate(root / "cityscapes", "cityscapes", 4, (64, 128), seed=0)
    generate(root / "darkzurich", "darkzurich", 4, (64, 128), seed=0)
    return root


#: smaller crops for tests whose steps must run but need not see much: this file's slowest (autocast steps take
#: 30 s at the default 48 pixels on a CPU without native bf16/fp16, and fp32 steps 2 s on a slow one)
SMALL_CROPS = {"data.source.crop": "[32, 32]", "data.target.crop": 40, "data.target.resize_to": 32}


def overrides(data: Path, **extra: object) -> list[str]:
    values = {"data.source.root": data / "cityscapes", "data.target.root": data / "darkzurich",
              "data.val.root": data, "pretrain.val_root": data, "data.source.crop": "[48, 48]",
              "data.target.crop": 56, "data.target.resize_to": 48, "run.val_every": 0, "run.log_every": 1,
              "run.checkpoint_every": 2, "optim.iterations": 4, "pretrain.iterations": 4, "data.workers": 0, **extra}
    return [f"{k}={v}" for k, v in values.items()]


def cli_args(data: Path, **extra: object) -> list[str]:
    return ["--config", "synthetic-cpu"] + [a for o in overrides(data, **extra) for a in ("--set", o)]


def task(data: Path, **extra: object):
    from train.dannet import DANNetTask

    config = load_config("synthetic-cpu", overrides(data, **extra))
    seed_everything(0)
    return DANNetTask(config, setup_env("cpu"), [], 0)


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_generator_and_discriminator_steps_touch_only_their_networks(data: Path) -> None:
    t = task(data)
    gen = [*t.segmenter.parameters(), *t.light.parameters()]
    disc = [*t.disc_day.parameters(), *t.disc_night.parameters()]
    g0, d0 = [p.detach().clone() for p in gen], [p.detach().clone() for p in disc]
    seen: dict[str, object] = {}
    g_step, d_step = t.optimizers["generator"].step, t.optimizers["discriminators"].step

    def generator_step(*args, **kwargs):
        seen["disc_grads"] = [p.grad for p in disc]
        seen["gen_grads"] = [p.grad.clone() for p in gen if p.grad is not None]
        out = g_step(*args, **kwargs)
        seen["gen_after"], seen["disc_after"] = [p.detach().clone() for p in gen], [p.detach().clone() for p in disc]
        return out

    def discriminator_step(*args, **kwargs):
        seen["gen_grads_at_d_step"] = [p.grad.clone() for p in gen if p.grad is not None]
        return d_step(*args, **kwargs)

    t.optimizers["generator"].step, t.optimizers["discriminators"].step = generator_step, discriminator_step
    values = t.step(0)
    assert all(g is None for g in seen["disc_grads"])  # no gradient reached D in the generator step
    assert same(seen["disc_after"], d0)  # the generator step left D alone
    # D's loss reached no generator weight: it sees the predictions detached
    assert 0 < len(seen["gen_grads"]) == len(seen["gen_grads_at_d_step"])
    assert same(seen["gen_grads_at_d_step"], seen["gen_grads"])
    assert not same(seen["gen_after"], g0)  # ...and moved G
    assert same([p.detach() for p in gen], seen["gen_after"])  # the D step left G alone
    assert not same([p.detach() for p in disc], d0)  # ...and moved D
    assert set(values) >= {"loss_total", "loss_seg", "loss_static", "loss_adv", "loss_d", "lr"}


@pytest.mark.parametrize("preset, light_source", [("synthetic-cpu", 1.0), ("paper", 0.01)])
def test_generator_total_uses_the_configured_weights(data: Path, preset: str, light_source: float) -> None:
    from train.dannet import DANNetTask

    extra = ["model.backbone=resnet18", "model.light_channels=16"] if preset == "paper" else []
    config = load_config(preset, overrides(data) + extra)
    seed_everything(0)
    v = DANNetTask(config, setup_env("cpu"), [], 0).step(0)
    expected = (light_source * v["loss_light_source"] + 0.01 * v["loss_light_target"] + v["loss_seg"]
                + v["loss_static"] + 0.01 * v["loss_adv"])
    assert v["loss_total"] == pytest.approx(expected, rel=1e-5)


def test_aux_head_frozen_unless_trained(data: Path) -> None:
    t = task(data)
    assert not any(p.requires_grad for p in t.segmenter.dsn.parameters())
    t = task(data, **{"loss.aux": 0.4})
    before = snapshot(t.segmenter.dsn)
    t.step(0)
    assert not same(snapshot(t.segmenter.dsn), before)


def run_until_checkpoint_then_signal(argv: list[str], out: Path, wait_for: Path, sig: int) -> int:
    # one thread, as in this process: bitwise-equal weights need the same reduction order
    proc = subprocess.Popen([sys.executable, "-m", "train.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while not wait_for.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=300)
    return proc.returncode


def test_resume_after_sigterm_gives_the_same_weights(data: Path, tmp_path: Path) -> None:
    args = cli_args(data, **{"optim.iterations": 6, "run.checkpoint_every": 2, **SMALL_CROPS})  # 242 MB each
    assert train_main(["adapt", *args, "--out", str(tmp_path / "straight")]) == 0
    out = tmp_path / "interrupted"
    rc = run_until_checkpoint_then_signal(["adapt", *args, "--out", str(out)], out,
                                          out / "checkpoints" / "checkpoint_0000002.pth", signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM  # stopped early, cleanly, with a checkpoint
    assert not (out / "final.pth").exists()
    assert load_checkpoint(latest_checkpoint(out)).iteration < 6
    assert train_main(["adapt", "--resume", "--out", str(out)]) == 0
    a, b = load_checkpoint(tmp_path / "straight" / "final.pth"), load_checkpoint(out / "final.pth")
    assert a.iteration == b.iteration == 6
    for role in ("segmenter", "light", "disc_day", "disc_night"):
        for key, value in a.models[role].items():
            assert torch.equal(value, b.models[role][key]), f"{role}.{key}"


def test_resume_after_a_kill_logs_each_iteration_once(data: Path, tmp_path: Path) -> None:
    """A run killed without a signal (no checkpoint at the kill) logged iterations past its last checkpoint;
    resumed from that checkpoint, metrics.jsonl holds every iteration once, a line cut by the kill dropped."""
    out = tmp_path / "killed"
    args = cli_args(data, **{"pretrain.iterations": 4, "run.checkpoint_every": 2})
    assert train_main(["pretrain", *args, "--out", str(out)]) == 0
    for gone in (out / "final.pth", out / "checkpoints" / "checkpoint_0000004.pth"):  # as if killed after step 4
        gone.unlink()
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 5, "loss')
    assert train_main(["pretrain", "--resume", "--out", str(out)]) == 0
    logged = [json.loads(line)["iteration"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4]


def test_resume_restores_the_fp16_gradient_scale(data: Path, tmp_path: Path) -> None:
    """An fp16 run's gradient scale and growth tracker come back on --resume: a fresh scaler (scale 65536)
    would skip optimiser steps the uninterrupted run took, and the weights would part."""
    from train.engine import resume
    from train.pretrain import PretrainTask

    out = tmp_path / "fp16"
    assert train_main(["pretrain", *cli_args(data, **{"run.amp": "fp16", "pretrain.iterations": 2, **SMALL_CROPS}),
                       "--out", str(out)]) == 0
    path = latest_checkpoint(out)
    ckpt = torch.load(path, weights_only=True)
    ckpt["extra"]["scaler"].update(scale=1024.0, _growth_tracker=7)  # a state no fresh scaler has
    torch.save(ckpt, path)
    config = load_config("synthetic-cpu", overrides(data, **{"run.amp": "fp16", **SMALL_CROPS}))
    fresh = PretrainTask(config, setup_env("cpu"), [], 2)
    resume(fresh, path, setup_env("cpu"))
    assert fresh.precision.scaler.get_scale() == 1024.0
    assert fresh.precision.scaler.state_dict()["_growth_tracker"] == 7


def test_time_limit_stops_and_decays_the_learning_rate_over_the_minutes(data: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``run.time_limit_min``: training stops once that much training time is spent, however many
    iterations remain, keeps a final checkpoint there, and the poly schedule follows the time (the
    learning rate falls towards 0 as the limit nears, not towards iteration 10,000's value); the progress
    bar names both ends, since either may come first. 8 s: the last step must start after 69% of the limit for
    its rate to be under 35% of the first, so a step may take up to 2.5 s on a loaded machine."""
    out, limit_s = tmp_path / "timed", 8.0
    assert train_main(["pretrain", *cli_args(data, **{"pretrain.iterations": 10_000, "run.checkpoint_every": 10_000,
                                                      "run.time_limit_min": limit_s / 60}), "--out", str(out)]) == 0
    assert f"until 10000 it or {limit_s / 60:g} min" in capsys.readouterr().err
    final = load_checkpoint(out / "final.pth")
    assert 1 < final.iteration < 10_000 and final.extra["trained_s"] >= limit_s
    last = last_step_s(out)  # the step before the last ended in time:
    assert final.extra["trained_s"] - last < limit_s + 0.5, (final.extra["trained_s"], last)
    lrs = [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lrs[-1] < 0.35 * lrs[0]  # iteration-based decay would still be above 99% of the base rate
    # resuming a run whose time is spent trains no further
    assert train_main(["pretrain", "--resume", "--out", str(out)]) == 0
    assert load_checkpoint(out / "final.pth").iteration == final.iteration
    # a limit shorter than one step still leaves a model to call final (written as YAML 1.1 reads 1e-7: a string)
    assert train_main(["pretrain", *cli_args(data, **{"pretrain.iterations": 10_000, "run.time_limit_min": "1e-7"}),
                       "--out", str(tmp_path / "instant")]) == 0
    assert load_checkpoint(tmp_path / "instant" / "final.pth").iteration == 1


@pytest.mark.parametrize("job", ["pretrain", "adapt"])
def test_a_time_limit_that_ends_on_the_steps_changes_no_weight(job: str, data: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A limit that the iterations reach first (the demo's minutes are such a cap) trains, to the last bit,
    as the same run without one, even where the first step (warm-up) takes longer than the limit's share
    of a step, if the rest keep an even pace: the schedule is the iterations', from the first learning rate on."""
    from train.dannet import DANNetTask
    from train.pretrain import PretrainTask

    finals = {}
    for name, limit in (("unlimited", "null"), ("capped", 0.5)):
        if name == "capped":  # 30 s for 4 steps: 7.5 s a step; the first takes 8 s more than it computes
            task_class = PretrainTask if job == "pretrain" else DANNetTask
            step, slow = task_class.step, [8.0]

            def slow_first_step(self, *args, **kwargs):
                time.sleep(slow.pop() if slow else 0.0)
                return step(self, *args, **kwargs)
            monkeypatch.setattr(task_class, "step", slow_first_step)
        out = tmp_path / name
        assert train_main([job, *cli_args(data, **{"run.time_limit_min": limit}), "--out", str(out)]) == 0
        finals[name] = load_checkpoint(out / "final.pth")
    unlimited, capped = finals["unlimited"], finals["capped"]
    assert unlimited.iteration == capped.iteration == 4 and capped.extra["trained_s"] > 8
    assert unlimited.models.keys() == capped.models.keys()
    for net, weights in unlimited.models.items():
        assert weights.keys() == capped.models[net].keys()
        assert all(torch.equal(tensor, capped.models[net][key]) for key, tensor in weights.items()), net


def test_optimizer_choice_for_the_segmentation_and_relighting_nets(data: Path, tmp_path: Path, capsys) -> None:
    """``optim.optimizer``: SGD with momentum (the released code's) or AdamW, in adaptation and in
    pre-training; the discriminators keep Adam; anything else is a one-line usage error."""
    from train.pretrain import PretrainTask

    sgd, adamw = task(data), task(data, **{"optim.optimizer": "adamw", "optim.weight_decay": 0.01})
    assert type(sgd.optimizers["generator"]) is torch.optim.SGD
    assert type(adamw.optimizers["generator"]) is torch.optim.AdamW
    assert adamw.optimizers["generator"].defaults["weight_decay"] == 0.01
    assert type(adamw.optimizers["discriminators"]) is torch.optim.Adam
    config = load_config("synthetic-cpu", overrides(data, **{"optim.optimizer": "adamw"}))
    assert type(PretrainTask(config, setup_env("cpu"), [], 0).optimizers["segmenter"]) is torch.optim.AdamW
    assert train_main(["adapt", *cli_args(data, **{"optim.optimizer": "adam"}), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'optim.optimizer' must be one of sgd, adamw, got 'adam'" in err[0]


def test_latest_checkpoint_skips_a_damaged_one(tmp_path: Path) -> None:
    seg = build_segmenter("pspnet", backbone="resnet18")
    save_checkpoint(tmp_path / "checkpoints" / "checkpoint_0000002.pth", {"segmenter": seg}, iteration=2)
    bad = save_checkpoint(tmp_path / "checkpoints" / "checkpoint_0000004.pth", {"segmenter": seg}, iteration=4)
    bad.write_bytes(bad.read_bytes()[:1000])
    assert latest_checkpoint(tmp_path).name == "checkpoint_0000002.pth"


class Draw(torch.utils.data.Dataset):
    """One number from torch's generator per item: what a sample's augmentation draws."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.rand(())


def test_a_sample_is_drawn_from_its_seed_and_reseeds_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sample's draws come from its own seed, the caller's CPU generator is left where it was, and no GPU
    generator is touched: ``torch.manual_seed`` in the loader reseeded every GPU's at each sample, so CUDA
    dropout masks followed the last sample loaded."""
    reseeded: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeded.append)
    monkeypatch.setattr(torch.cuda, "manual_seed", reseeded.append)
    before = torch.get_rng_state()
    samples = SeededDataset(Draw())
    five, again, six = samples[(0, 5)], samples[(1, 5)], samples[(0, 6)]
    assert five == again == torch.rand((), generator=torch.Generator().manual_seed(5)) != six
    assert torch.equal(torch.get_rng_state(), before)
    assert reseeded == []


def test_any_run_seed_gives_a_stream_and_small_seeds_keep_theirs() -> None:
    """``run.seed`` above ~18.4 million made a sample seed beyond 64 bits (an overflow at the first batch); above
    2**64 the first shuffle and ``seed_everything`` overflowed too. Seeds below that keep the stream they
    always had, so a run started before this change resumes onto the same batches."""
    for seed in (18_500_000, 2**64 + 3, 10**30):
        seed_everything(seed)
        batches = stream(Draw(), 2, seed, 0, Env(torch.device("cpu")), workers=0)
        assert all(torch.isfinite(next(batches)).all() for _ in range(3))  # 6 samples: into the second epoch
    items = iter(SeededSampler(4, seed=3))
    sample_seeds = [next(items)[1] for _ in range(5)]
    assert sample_seeds == [(3 * 1_000_003 + epoch) * 1_000_033 + k for epoch, k in ((0, 0), (0, 1), (0, 2), (0, 3),
                                                                                      (1, 0))]


def _ddp_worker(rank: int, world: int, port: int, config_overrides: list[str], out: str) -> None:
    from train.dannet import DANNetTask

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    env = setup_env("cpu")
    seed_everything(0, rank)  # different initial weights per rank: DDP must broadcast rank 0's
    t = DANNetTask(load_config("synthetic-cpu", config_overrides), env, [], 0)
    for i in range(2):
        t.step(i)
    flat = torch.cat([p.detach().flatten() for m in t.models.values() for p in unwrap(m).parameters()])
    torch.save(flat, Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _ddp_cli_worker(rank: int, world: int, port: int, argv: list[str]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    if train_main(argv) != 0:
        raise SystemExit(f"rank {rank}: dannet-train failed")


def test_ddp_run_validates_saves_the_best_and_finishes(data: Path, tmp_path: Path) -> None:
    """The whole loop with two processes: the main one validates every iteration, each new best is saved as a
    checkpoint with every process's RNG state (a collective) and linked as best.pth, and the run ends with
    final.pth. A collective that only the validating process enters would leave both waiting for ever."""
    out = tmp_path / "ddp"
    argv = ["pretrain", *cli_args(data, **{"run.val_every": 1, "pretrain.iterations": 2}), "--out", str(out)]
    processes = mp.spawn(_ddp_cli_worker, args=(2, free_port(), argv), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    while not processes.join(timeout=1):
        if time.monotonic() > deadline:
            for process in processes.processes:
                process.kill()
            pytest.fail("two processes did not finish 2 iterations in 120 s: one waits in a collective")
    assert (out / "best.pth").is_file() and (out / "final.pth").is_file()
    final = load_checkpoint(out / "final.pth")
    assert final.iteration == 2 and len(final.extra["rng"]) == 2
    assert sum("val_miou" in line for line in (out / "metrics.jsonl").read_text().splitlines()) == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes_keep_identical_parameters(data: Path, tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, free_port(), overrides(data), str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert torch.equal(a, b)
    seed_everything(0)
    fresh = task(data)
    init = torch.cat([p.detach().flatten() for m in fresh.models.values() for p in m.parameters()])
    assert not torch.equal(a, init)  # and they trained


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "nan"
    rc = train_main(["adapt", *cli_args(data, **{"optim.lr": 1e30, "optim.iterations": 6,
                                                 "run.checkpoint_every": 1}), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and ("is nan" in err.lower() or "is inf" in err.lower()) and "last good checkpoint" in err
    for path in (out / "checkpoints").glob("*.pth"):
        for sd in load_checkpoint(path).models.values():
            assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


def test_night_labels_as_the_labelled_source(data: Path, tmp_path: Path, capsys) -> None:
    """``data.source.dataset=acdc-night`` trains pretrain on ACDC night train (the supervised bound); a day root
    given for it, an unknown dataset and adapt with it are one-line errors."""
    from train.factory import source_dataset

    acdc = generate(tmp_path / "acdc", "acdc", 3, (64, 128), seed=0)
    config = load_config("synthetic-cpu", overrides(data, **{"data.source.dataset": "acdc-night",
                                                             "data.source.root": acdc}))
    night_train = sorted((acdc / "rgb_anon" / "night" / "train").rglob("*_rgb_anon.png"))
    assert [s.image for s in source_dataset(config).samples] == night_train and len(night_train) == 3
    assert train_main(["pretrain", *cli_args(data, **{"data.source.dataset": "acdc-night", "data.source.root": acdc}),
                       "--out", str(tmp_path / "night")]) == 0
    assert load_checkpoint(tmp_path / "night" / "final.pth").iteration == 4
    capsys.readouterr()
    assert train_main(["pretrain", *cli_args(data, **{"data.source.dataset": "acdc-night"}),
                       "--out", str(tmp_path / "day-root")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rgb_anon/night/train" in err[0]
    assert train_main(["pretrain", *cli_args(data, **{"data.source.dataset": "darkzurich-val"}),
                       "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'data.source.dataset' must be one of cityscapes, acdc-night" in err[0]
    assert train_main(["adapt", *cli_args(data, **{"data.source.dataset": "acdc-night", "data.source.root": acdc}),
                       "--out", str(tmp_path / "adapt")]) == 2  # adaptation from night labels adapts nothing
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.source.dataset=acdc-night is for pretrain" in err[0]


def test_pretrain_then_adapt_then_eval(data: Path, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    assert train_main(["pretrain", *cli_args(data), "--out", str(tmp_path / "pre")]) == 0
    assert "note: the segmentation net starts from random weights; --init imagenet" in capsys.readouterr().out
    pre = load_checkpoint(tmp_path / "pre" / "final.pth")
    assert list(pre.models) == ["segmenter"] and pre.iteration == 4
    assert train_main(["adapt", *cli_args(data), "--init", str(tmp_path / "pre" / "final.pth"),
                       "--out", str(tmp_path / "ada")]) == 0
    printed = capsys.readouterr().out
    assert f"init segmenter <- {tmp_path / 'pre' / 'final.pth'}" in printed and "random weights" not in printed
    assert train_main(["eval", "--checkpoint", str(tmp_path / "ada" / "final.pth"), "--dataset", "synthetic",
                       "--root", str(data), "--scale", "1.0", "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "with relighting" in printed and (tmp_path / "r.json").is_file()
    assert (tmp_path / "ada" / "metrics.jsonl").read_text().count("loss_total") == 4


def eval_checkpoint(path: Path, recorded_eval: dict | None) -> Path:
    """A small PSPNet-ResNet18 with a relighting net, saved as a run of ours whose config holds ``recorded_eval``
    (None: a released segmentation state dict, which holds no config)."""
    torch.manual_seed(0)
    segmenter = build_segmenter("pspnet", backbone="resnet18")
    if recorded_eval is None:
        torch.save(segmenter.state_dict(), path)
        return path
    return save_checkpoint(path, {"segmenter": segmenter, "light": RelightNet(channels=16)}, arch="pspnet",
                           config={"model": {"backbone": "resnet18"}, "eval": recorded_eval})


def evaluated_with(data: Path, checkpoint: Path, capsys, *flags: str) -> tuple[str, dict]:
    """The settings line ``dannet-train eval`` printed and its JSON."""
    out = checkpoint.with_suffix(".json")
    capsys.readouterr()
    assert train_main(["eval", "--checkpoint", str(checkpoint), "--dataset", "synthetic", "--root", str(data),
                       "--scale", "1.0", "--max-images", "1", "--json", str(out), *flags]) == 0
    return capsys.readouterr().out.splitlines()[0], json.loads(out.read_text())


def test_eval_uses_the_test_time_weights_its_checkpoint_recorded(data: Path, tmp_path: Path, capsys) -> None:
    """A run configured with ``eval.reweight: probs`` and ``eval.weights_std: 0.3`` validated with them; ``eval``
    of its checkpoint used the flags' defaults (logits, 0.16) instead. The flags still win; a released file,
    which records nothing, keeps the reference's."""
    ours = eval_checkpoint(tmp_path / "ours.pth", {"reweight": "probs", "weights_std": 0.3})
    line, result = evaluated_with(data, ours, capsys)
    assert "weights std 0.3, reweight probs" in line
    assert (result["weights_std"], result["reweight"]) == (0.3, "probs")
    line, result = evaluated_with(data, ours, capsys, "--reweight", "logits", "--weights-std", "0.1")
    assert "weights std 0.1, reweight logits" in line
    assert (result["weights_std"], result["reweight"]) == (0.1, "logits")
    line, result = evaluated_with(data, eval_checkpoint(tmp_path / "released.pth", None), capsys, "--backbone",
                                  "resnet18")
    assert "weights std 0.16, reweight logits" in line


def test_eval_at_a_scale_whose_input_is_no_multiple_of_4(data: Path, tmp_path: Path, capsys) -> None:
    """``--scale 0.55`` of the 64x128 night images asks for a 35x70 input, which the relighting net cannot give
    back (an internal error); the input is rounded to 36x72 and the labels are still scored at 64x128."""
    ckpt = eval_checkpoint(tmp_path / "ours.pth", {"reweight": "logits", "weights_std": 0.16})
    capsys.readouterr()
    assert train_main(["eval", "--checkpoint", str(ckpt), "--dataset", "synthetic", "--root", str(data),
                       "--scale", "0.55", "--max-images", "1"]) == 0
    assert "mIoU" in capsys.readouterr().out


def test_user_errors_are_one_line(data: Path, tmp_path: Path, capsys) -> None:
    def error(argv: list[str], code: int = 2) -> str:
        assert train_main(argv) == code
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert "unknown config key 'loss.statik'" in error(["adapt", *cli_args(data), "--set", "loss.statik=1",
                                                          "--out", str(tmp_path / "a")])
    missing = error(["adapt", "--config", "synthetic-cpu", "--set", f"data.source.root={tmp_path / 'nowhere'}",
                     "--out", str(tmp_path / "b")], code=3)  # 3: a dataset that cannot be used
    assert "nowhere" in missing and "not found" in missing
    deeplab = tmp_path / "dannet_deeplab.pth"
    torch.save(build_segmenter("deeplab", backbone="resnet18").state_dict(), deeplab)
    assert "weights for deeplab, but model.arch is pspnet" in error(
        ["adapt", *cli_args(data), "--init", str(deeplab), "--out", str(tmp_path / "c")])
    assert "--resume given but no complete checkpoint" in error(
        ["adapt", *cli_args(data), "--resume", "--out", str(tmp_path / "d")])


def preset_differences(a: dict, b: dict, prefix: str = "") -> set[str]:
    """Dotted keys whose values differ between two configs."""
    keys = set()
    for key, value in a.items():
        if isinstance(value, dict):
            keys |= preset_differences(value, b[key], f"{prefix}{key}.")
        elif value != b[key]:
            keys.add(f"{prefix}{key}")
    return keys


def test_config_presets_and_overrides() -> None:
    ref, paper = load_config("reference"), load_config("paper")
    assert preset_differences(ref, paper) == {
        "data.target.resize_to", "optim.lr_d", "loss.light_source", "loss.exposure_target", "loss.exposure_norm",
        "loss.tv_norm", "loss.seg_norm", "loss.pseudo_label", "loss.static_probs", "loss.static_class_weights",
        "loss.static_neighbourhood",
        "eval.reweight"}
    assert ref["run"]["amp"] == "none"  # the reference trains in fp32
    assert load_config("reference", ["optim.betas_d=[0.5, 0.9]"])["optim"]["betas_d"] == [0.5, 0.9]
    with pytest.raises(ConfigError, match="no such config"):
        load_config("nonexistent-preset")
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config("reference", ["novalue"])


def test_paper_vs_code_table_names_every_preset_difference() -> None:
    """train/README.md's table has a row, with its option, for every key the two presets set
    differently (and names only options that exist)."""
    table = (Path(__file__).parents[1] / "train" / "README.md").read_text().split("## Paper and reference code")[1]
    options = set(re.findall(r"`((?:data|model|optim|loss|eval|run)\.[a-z_.]+)", table))
    ref, paper = load_config("reference"), load_config("paper")
    assert preset_differences(ref, paper) <= options
    for option in options:
        section = ref
        for part in option.split("."):
            assert part in section, f"train/README.md names {option}, which is not a config key"
            section = section[part]


def test_target_predictions_are_compared_at_the_configured_size(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pseudo label, the static loss and D_d/D_n see the target predictions upsampled to the
    target crop (56 here, ``crop``: the reference code) or to the network input (48, ``input``);
    the source's stay at the source crop (48)."""
    from train import dannet

    config = load_config("synthetic-cpu", overrides(data))
    assert dannet.target_compare_size(config) == (56, 56)
    config["loss"]["target_resolution"] = "input"
    assert dannet.target_compare_size(config) == (48, 48)
    config["data"]["target"]["resize_to"] = None
    assert dannet.target_compare_size(config) == (56, 56)
    config["loss"]["target_resolution"] = "both"
    with pytest.raises(ValueError, match="target_resolution"):
        dannet.target_compare_size(config)

    seen: dict[str, list[tuple[int, ...]]] = {"pseudo": [], "static": [], "disc": []}
    pseudo_label, static_loss = dannet.losses.pseudo_label, dannet.losses.static_loss
    monkeypatch.setattr(dannet.losses, "pseudo_label", lambda d, n, *a: seen["pseudo"].append(
        (*d.shape[-2:], *n.shape[-2:])) or pseudo_label(d, n, *a))
    monkeypatch.setattr(dannet.losses, "static_loss", lambda n, p, *a: seen["static"].append(
        (*n.shape[-2:], *p.shape[-2:])) or static_loss(n, p, *a))
    t = task(data)  # reference behaviour: target_resolution crop
    for d in (unwrap(t.disc_day), unwrap(t.disc_night)):
        d.register_forward_pre_hook(lambda module, args: seen["disc"].append(tuple(args[0].shape[-2:])))
    t.step(0)
    assert seen["pseudo"] == [(56,) * 4] and seen["static"] == [(56,) * 4]
    # generator: D_d(day), D_n(night); then discriminators: D_d(source), D_d(day), D_n(source), D_n(night)
    assert seen["disc"] == [(56, 56)] * 2 + [(48, 48), (56, 56)] * 2


@pytest.mark.parametrize("extra, key", [
    ({"data.source.crop": "[50, 48]"}, "data.source.crop=[50, 48]"),
    ({"data.target.resize_to": 50}, "data.target.resize_to=50"),
    ({"data.target.resize_to": "null", "data.target.crop": 58}, "data.target.crop=58"),
    ({"loss.exposure_patch": 52}, "data.source.crop=[48, 48]"),
])
def test_adaptation_refuses_inputs_the_relighting_net_cannot_take(data: Path, extra: dict, key: str) -> None:
    """The relighting net gives back only sides that are multiples of 4, and the exposure loss pools squares
    of ``loss.exposure_patch``: a source crop of 50 or a target input of 50 (or 58, not resized) used to stop
    the first step with an internal error, a crop smaller than the patch as well."""
    with pytest.raises(ConfigError) as error:
        task(data, **extra)
    assert str(error.value).startswith(key) and "multiples of 4" in str(error.value)


def test_without_relighting_any_crop_trains(data: Path) -> None:
    """The sizes only matter to the relighting net: without it (and in pre-training) a crop of 50 is a crop."""
    assert math.isfinite(task(data, **{"model.relight": False, "data.source.crop": "[50, 50]"}).step(0)["loss_total"])


def test_precision_drift_against_fp32(data: Path) -> None:
    """``dannet-train precision``: a second fp32 run reproduces the first exactly (same weights,
    batches and dropout masks), so what an autocast run shows is its own rounding; bf16 (CPU
    autocast here) differs, but stays finite."""
    from train.precision import drift, table

    config = load_config("synthetic-cpu", overrides(data, **{"run.device": "cpu", **SMALL_CROPS}))
    rows = drift(config, steps=1, amps=("none", "bf16"))
    same, bf16 = rows
    assert same["amp"] == "none" and all(v == 0 for k, v in same.items() if k not in ("amp", "step"))
    assert bf16["amp"] == "bf16" and 0 < bf16["loss_total"] < 0.1 and 0 < bf16["grad_discriminators"] < float("inf")
    assert table(rows).count("\n") == 3


# --- CUDA ---------------------------------------------------------------------------------------------

def test_run_device_names_one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain ``cuda`` becomes this process's GPU (torch.cuda.set_device refuses a device without an
    index); a GPU that is not there and a misspelt device are one-line usage errors."""
    from train.engine import TrainingError, select_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("cuda") == torch.device("cuda", 0)
    assert select_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert select_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert select_device("cuda:1") == torch.device("cuda", 1) and select_device("cpu") == torch.device("cpu")
    for wrong, words in (("cuda:2", "no GPU 2 here (2 visible)"), ("gpu", "expected auto, cpu, cuda or cuda:N")):
        with pytest.raises(TrainingError, match=re.escape(words)):
            select_device(wrong)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    with pytest.raises(TrainingError, match="no CUDA GPU is available"):
        select_device("cuda")


def _cuda_or_skip() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


def _dropout_off(task) -> None:
    """CPU and CUDA draw dropout masks from different generators; with p=0 both steps see the same net."""
    for net in task.models.values():
        for m in unwrap(net).modules():
            if isinstance(m, torch.nn.modules.dropout._DropoutNd):
                m.p = 0.0


@pytest.mark.gpu
def test_cuda_step_equals_cpu_step(data: Path) -> None:
    """The CUDA path (channels_last weights and batches, pinned memory, cuDNN) computes the same DANNet
    step as the CPU: the loss terms of the first step (same weights, only the order of the sums
    differs; TF32 off, which would round every convolution to 10 bits of mantissa) and the weights
    it trains. Later steps are not compared: adversarial training amplifies rounding step by step."""
    from train.dannet import DANNetTask

    _cuda_or_skip()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        runs = {}
        for device in ("cpu", "cuda"):
            config = load_config("synthetic-cpu", overrides(data, **{"run.device": device, "run.channels_last": True}))
            seed_everything(0)
            task = DANNetTask(config, setup_env(device), [], 0)
            _dropout_off(task)
            losses = task.step(0)
            weights = {role: torch.cat([p.detach().double().cpu().flatten() for p in net.parameters()])
                       for role, net in task.models.items()}
            runs[device] = losses, weights
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    (cpu_losses, cpu_w), (gpu_losses, gpu_w) = runs["cpu"], runs["cuda"]
    assert set(cpu_losses) == set(gpu_losses)
    differ = {k: (v, gpu_losses[k]) for k, v in cpu_losses.items() if gpu_losses[k] != pytest.approx(v, rel=1e-4, abs=1e-6)}
    assert not differ, f"loss terms (cpu, cuda) after step 0: {differ}"
    moved = {role: ((gpu_w[role] - w).norm() / w.norm()).item() for role, w in cpu_w.items()}
    # Adam's first update is +-lr_d per weight whatever the gradient's size: where rounding flips the sign of
    # a near-zero discriminator gradient, the weight moves by 2 lr_d; SGD's nets move in proportion
    tolerance = {"segmenter": 1e-5, "light": 1e-5, "disc_day": 1e-3, "disc_night": 1e-3}
    assert all(moved[role] < tolerance[role] for role in moved), f"relative weight differences after step 0: {moved}"


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_pretrain_then_adapt_on_cuda_with_autocast(data: Path, tmp_path: Path, amp: str) -> None:
    """The jobs a workstation runs: CUDA, autocast, DataLoader workers with pinned memory; the
    checkpoints load on a CPU-only machine and hold finite weights."""
    _cuda_or_skip()
    extra = {"run.device": "cuda", "run.amp": amp, "data.workers": 2}
    assert train_main(["pretrain", *cli_args(data, **extra), "--out", str(tmp_path / "pre")]) == 0
    assert train_main(["adapt", *cli_args(data, **extra), "--init", str(tmp_path / "pre" / "final.pth"),
                       "--out", str(tmp_path / "ada")]) == 0
    records = [line for line in (tmp_path / "ada" / "metrics.jsonl").read_text().splitlines() if "loss_total" in line]
    assert len(records) == 4 and "nan" not in " ".join(records).lower()
    final = load_checkpoint(tmp_path / "ada" / "final.pth")  # map_location cpu
    assert set(final.models) >= {"segmenter", "light", "disc_day", "disc_night"}
    for state in final.models.values():
        assert all(v.device.type == "cpu" and torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.gpu
def test_autocast_drift_on_cuda_is_small(data: Path) -> None:
    """bf16 and fp16 autocast on CUDA: the first step's total loss within 2% of fp32's (0.4% and 0.1%
    measured for PSPNet-R101 on an H200), every loss finite after it (``dannet-train precision``
    prints the figures; BENCHMARKS.md has them)."""
    from train.precision import drift

    _cuda_or_skip()
    rows = drift(load_config("synthetic-cpu", overrides(data, **{"run.device": "cuda"})), steps=2)
    assert [r["amp"] for r in rows] == ["bf16", "bf16", "fp16", "fp16"]
    for row in rows:  # step 0: the rounding of one forward pass; after it, drift compounds (0.12 seen at step 1)
        losses = {k: v for k, v in row.items() if k.startswith("loss")}
        assert all(math.isfinite(v) for v in losses.values()), row
        assert row["step"] > 0 or 0 < row["loss_total"] < 0.02, row


@pytest.mark.gpu
def test_resume_on_cuda_restores_every_state_and_continues_the_run(data: Path, tmp_path: Path) -> None:
    """``--resume`` of a CUDA run. The checkpoint used to be read onto the GPU, RNG states included, which
    torch.set_rng_state, numpy and torch.cuda.set_rng_state_all refuse: every CUDA resume stopped there.

    Exact: what ``resume`` restores (weights and optimiser state on the GPU, the CPU and CUDA generators as
    saved). Whole run: resumed from iteration 2 of 4, the weights come out where the uninterrupted run's
    did, up to the rounding of CUDA kernels that add with atomics (bilinear upsampling's backward) and is
    not the same twice; wrong dropout masks or a lost optimiser state would part them much further."""
    from train.dannet import DANNetTask
    from train.engine import resume

    _cuda_or_skip()
    out = tmp_path / "cuda"
    assert train_main(["adapt", *cli_args(data, **{"run.device": "cuda", "run.checkpoint_every": 2}),
                       "--out", str(out)]) == 0
    straight = load_checkpoint(out / "final.pth")
    for gone in (out / "final.pth", out / "checkpoints" / "checkpoint_0000004.pth"):  # as if killed after step 4
        gone.unlink()
    saved = load_checkpoint(latest_checkpoint(out))
    assert saved.iteration == 2

    env = setup_env("cuda")
    fresh = DANNetTask(load_config(str(out / "config.yaml")), env, [], 2)
    resume(fresh, saved.path, env)
    rng = saved.extra["rng"][0]
    assert torch.equal(torch.get_rng_state(), rng["torch"])
    assert all(torch.equal(now, then) for now, then in zip(torch.cuda.get_rng_state_all(), rng["cuda"], strict=True))
    for role, net in fresh.models.items():
        for key, value in unwrap(net).state_dict().items():
            assert value.device == env.device and torch.equal(value.cpu(), saved.models[role][key]), f"{role}.{key}"
    for name, optimizer in fresh.optimizers.items():
        for param, state in optimizer.state.items():  # Adam keeps its step count on the CPU
            assert all(v.device == param.device for k, v in state.items() if k != "step"), name
        restored = optimizer.state_dict()["state"]
        for index, state in saved.optimizers[name]["state"].items():
            assert all(torch.equal(restored[index][k].cpu(), v) for k, v in state.items()), f"{name} {index}"

    assert train_main(["adapt", "--resume", "--out", str(out)]) == 0
    resumed = load_checkpoint(out / "final.pth")
    assert resumed.iteration == straight.iteration == 4
    for role, state in straight.models.items():
        a = torch.cat([v.double().flatten() for v in state.values() if v.is_floating_point()])
        b = torch.cat([v.double().flatten() for v in resumed.models[role].values() if v.is_floating_point()])
        assert ((a - b).norm() / a.norm()).item() < 1e-3, role


@pytest.mark.gpu
def test_loading_a_sample_leaves_the_gpu_generator_alone() -> None:
    _cuda_or_skip()
    before = torch.cuda.get_rng_state()
    SeededDataset(Draw())[(0, 5)]
    assert torch.equal(torch.cuda.get_rng_state(), before)


# --- metrics ------------------------------------------------------------------------------------------

def test_confusion_matrix_and_iou_by_hand() -> None:
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm = confusion_matrix(pred, label, num_classes=4)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[2, 2], expected[2, 0] = 1, 1, 3, 1, 1
    np.testing.assert_array_equal(cm, expected)
    # IoU: class 0: 1 / (1 + 1 + 1) ; class 1: 3 / (3 + 1) ; class 2: 1 / (1 + 1) ; class 3 absent
    np.testing.assert_allclose(iou_per_class(cm)[:3], [1 / 3, 3 / 4, 1 / 2])
    assert np.isnan(iou_per_class(cm)[3])
    assert mean_iou(cm) == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    meter = ConfusionMeter(4)
    meter.update(pred, label)
    meter.update(pred, label)
    assert meter.miou == pytest.approx(mean_iou(cm))
    with pytest.raises(ValueError, match="differ in size"):
        confusion_matrix(pred[:, :2], label)
