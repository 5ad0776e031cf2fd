"""What every training job needs besides its step: device and DDP set-up, resumable data streams,
checkpoints, logging, signals and the loop that ties them together.

A job is a ``Task`` (``train.pretrain.PretrainTask``, ``train.dannet.DANNetTask``) with networks,
optimisers and a ``step(iteration)``; ``run`` drives it. Data order and augmentation are a function
of (seed, iteration) — ``SeededSampler`` hands every sample its own seed — and the RNG states are
saved with the checkpoint, so a resumed run continues exactly where the interrupted one was.
"""
from __future__ import annotations

import ast
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from runtime.atomic import atomic_write
from runtime.errors import EXIT_FAILED, EXIT_USAGE, DannetError

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import dump


class TrainingError(DannetError, RuntimeError):
    """A run that cannot go on; the message is one line saying why and what was kept. Exit 1 when the
    run itself failed (a NaN loss); errors in what the run was given say so with ``EXIT_USAGE``."""

    exit_code = EXIT_FAILED


# --- device and distributed ---------------------------------------------------------------------

@dataclass
class Env:
    """Where this process trains: device, and its place in a ``torchrun`` job (1 process otherwise)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def select_device(preference: str, local_rank: int = 0, setting: str = "run.device") -> torch.device:
    """The device of ``run.device`` (or of the flag ``setting`` names, in its errors), always with an index on
    CUDA: plain ``cuda`` is this process's GPU (``cuda:LOCAL_RANK``), which ``torch.cuda.set_device`` and DDP
    need spelled out."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(preference)
    except RuntimeError:
        raise TrainingError(f"{setting}={preference!r} is not a device (expected auto, cpu, cuda or cuda:N)",
                            EXIT_USAGE) from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise TrainingError(f"{setting}={preference!r} but no CUDA GPU is available (use auto or cpu)", EXIT_USAGE)
    device = torch.device("cuda", local_rank if device.index is None else device.index)
    if device.index >= torch.cuda.device_count():
        raise TrainingError(f"{setting}={preference!r}: no GPU {device.index} here "
                            f"({torch.cuda.device_count()} visible)", EXIT_USAGE)
    return device


def setup_env(preference: str) -> Env:
    """Read torchrun's RANK/WORLD_SIZE/LOCAL_RANK; NCCL on CUDA, gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Env(device, rank, world_size)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def distribute(module: nn.Module, env: Env) -> nn.Module:
    """DDP in a distributed run (with SyncBatchNorm on CUDA), the module itself otherwise.

    PyTorch's SyncBatchNorm runs on GPUs only; in a CPU (gloo) run each process keeps its own batch
    statistics and DDP broadcasts rank 0's running statistics at every forward.
    """
    if not env.distributed:
        return module
    if env.device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return nn.parallel.DistributedDataParallel(module, device_ids=[env.device.index])
    return nn.parallel.DistributedDataParallel(module)


# --- data streams -----------------------------------------------------------------------------------

def generator_seed(value: int) -> int:
    """``value`` as a seed torch's generators take (64 bits): the same below 2**64, so every stream that a
    seed gave before stays as it was, and wrapped above, so that any ``run.seed`` works (seeds equal modulo
    2**64 give the same run)."""
    return value % 2**64


class SeededSampler(Sampler):
    """An endless stream of ``(index, sample_seed)`` for one rank, starting at item ``start``.

    Epoch e shuffles with a generator seeded by (seed, e); each rank takes every world_size-th item.
    The sample seed drives that sample's augmentation (see ``SeededDataset``), so what a batch
    contains depends only on (seed, position in the stream), not on workers or interruptions.
    """

    def __init__(self, size: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.start, self.rank, self.world_size = size, seed, start, rank, world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        per_rank = math.ceil(self.size / self.world_size)
        epoch, offset = divmod(self.start, per_rank)
        while True:
            g = torch.Generator().manual_seed(generator_seed(self.seed * 1_000_003 + epoch))
            order = torch.randperm(self.size, generator=g).tolist()
            order += order[: per_rank * self.world_size - self.size]  # pad so every rank gets per_rank
            for position in range(offset, per_rank):
                k = position * self.world_size + self.rank
                yield order[k], generator_seed((self.seed * 1_000_003 + epoch) * 1_000_033 + k)
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # endless; DataLoader only needs this for len(loader)
        return sys.maxsize


class SeededDataset(Dataset):
    """Runs ``dataset[index]`` with torch's CPU generator, which the transforms draw from, seeded by the sample
    seed and restored afterwards. Only that one: ``torch.manual_seed`` would also reseed every GPU's generator,
    whose dropout masks then followed the last sample loaded rather than the run's seed."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]


def stream(dataset: Dataset, batch_size: int, seed: int, start_batch: int, env: Env, workers: int) -> Iterator:
    """Endless batches from ``dataset``, resuming at batch ``start_batch`` of this rank's stream."""
    sampler = SeededSampler(len(dataset), seed, start_batch * batch_size, env.rank, env.world_size)
    loader = DataLoader(SeededDataset(dataset), batch_size=batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=env.device.type == "cuda", drop_last=True, persistent_workers=workers > 0)
    return iter(loader)


# --- RNG state ------------------------------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors, numbers and a string (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
                             "numpy": [int(pos), int(has_gauss), float(gauss)], "python": repr(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(ast.literal_eval(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gathered_rng_states(env: Env) -> list[dict[str, Any]]:
    if not env.distributed:
        return [rng_state()]
    states: list[Any] = [None] * env.world_size
    dist.all_gather_object(states, rng_state())
    return states


def seed_everything(seed: int, rank: int = 0) -> None:
    torch.manual_seed(generator_seed(seed + rank))
    np.random.seed((seed + rank) % 2**32)
    random.seed(seed + rank)


# --- checkpoints ------------------------------------------------------------------------------------------

CHECKPOINT_GLOB = "checkpoint_*.pth"


def checkpoint_path(out: Path, iteration: int) -> Path:
    return out / "checkpoints" / f"checkpoint_{iteration:07d}.pth"


def latest_checkpoint(out: Path) -> Path | None:
    """The newest checkpoint in ``out`` that loads; a damaged newest one is skipped with a warning."""
    for path in sorted((out / "checkpoints").glob(CHECKPOINT_GLOB), reverse=True):
        try:
            load_checkpoint(path)
        except CheckpointError as e:
            print(f"warning: skipping unreadable checkpoint: {e}", file=sys.stderr)
            continue
        return path
    return None


# --- the task interface and the loop ----------------------------------------------------------------------

class Task(Protocol):
    """A training job: networks and optimisers by name, and one iteration of training."""

    arch: str
    models: dict[str, nn.Module]
    optimizers: dict[str, Any]
    precision: "Precision"

    def step(self, iteration: int, done: float | None = None) -> dict[str, float]:
        """One iteration; ``done`` is the fraction of the schedule behind it (default ``iteration / iterations``)."""

    def validate(self) -> float | None: ...


def _logged_iteration(line: str) -> int | None:
    """The iteration of one metrics.jsonl record; None for a line cut short by a kill."""
    try:
        return int(json.loads(line)["iteration"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class Logger:
    """JSON-lines metrics, TensorBoard where installed, and a tqdm bar; rank 0 only."""

    out: Path
    enabled: bool
    total: int
    start: int
    time_limit_min: float | None = None
    writer: Any = None
    bar: Any = None
    file: Any = None

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        self.file = open(self._metrics_up_to_start(), "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tensorboard"))
        except ImportError:  # TensorBoard is optional
            self.writer = None
        if self.time_limit_min is None:
            self.bar = tqdm(total=self.total, initial=self.start, unit="it", dynamic_ncols=True)
        else:  # either may end it first: no count to fill and no ETA, but both ends named
            self.bar = tqdm(initial=self.start, unit="it", dynamic_ncols=True,
                            desc=f"until {self.total} it or {self.time_limit_min:g} min")

    def _metrics_up_to_start(self) -> Path:
        """metrics.jsonl without the records after ``start``: a run killed without a signal (out of memory, power)
        logged iterations past its last checkpoint, which the resumed run logs again; kept, they would draw two
        curves over that span."""
        path = self.out / "metrics.jsonl"
        if path.is_file():
            lines = path.read_text().splitlines(keepends=True)
            kept = [line for line in lines if (logged := _logged_iteration(line)) is not None and logged <= self.start]
            if len(kept) < len(lines):
                atomic_write(path, "".join(kept))
        return path

    def log(self, iteration: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"iteration": iteration, "time": round(time.time(), 3), **values}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, iteration)
        shown = {k: v for k, v in values.items() if k.startswith("loss") or k == "val_miou"}
        self.bar.set_postfix({k.replace("loss_", ""): f"{v:.3f}" for k, v in shown.items()}, refresh=False)

    def advance(self) -> None:
        if self.enabled:
            self.bar.update(1)

    def close(self) -> None:
        if self.enabled:
            self.bar.close()
            self.file.close()
            if self.writer is not None:
                self.writer.close()


class _Signals:
    """SIGINT/SIGTERM set a flag that the loop checks after each iteration."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous = {}

    def __enter__(self) -> "_Signals":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _agree(done: float, signalled: bool, env: Env) -> tuple[float, bool]:
    """The schedule's fraction done and whether a signal arrived, as the most advanced process sees them:
    every process then sets the same learning rate and stops at the same iteration (one all-reduce, on
    the run's device, as NCCL requires)."""
    state = torch.tensor([done, float(signalled)], dtype=torch.float64, device=env.device)
    if env.distributed:
        dist.all_reduce(state, op=dist.ReduceOp.MAX)
    return state[0].item(), bool(state[1].item())


def _improved(miou: float | None, best: float | None, env: Env) -> bool:
    """Whether the main process's validation beat the best so far, as every process learns it (a broadcast, which
    also holds the others while the main one validates): saving the best checkpoint gathers every process's RNG
    state, so all of them must take that branch or the run waits for ever."""
    flag = torch.tensor([float(miou is not None and (best is None or miou > best))], device=env.device)
    if env.distributed:
        dist.broadcast(flag, src=0)
    return bool(flag.item())


@dataclass
class Clock:
    """Training time against ``run.time_limit_min``: seconds trained before this process (from the
    checkpoint it resumed) plus the seconds since ``start()``, called as this process's first step begins.

    A time limit is a cap: the learning rate follows the iterations unless the time is going to run out
    first. The first step of a process is warm-up (kernels chosen, caches filled, the first batch loaded),
    so the time fraction leaves it out: the seconds after it, of the seconds left after it, which still
    reaches 1 at the limit. Counted in, the warm-up (0.7-0.8 s in the demo's pre-training, against its
    limit's 0.72 s per step then) put the time ahead of the iterations for the first steps of runs that finish
    well inside their limit: their learning rates, and so every weight, followed the machine's speed. (A
    resumed run counts its earlier process's warm-up in: its fraction moves ahead by that much.)
    """

    limit_s: float | None
    before_s: float = 0.0
    started: float | None = None
    warmup_s: float = 0.0

    def start(self) -> None:
        self.started = time.monotonic()

    def warmed_up(self) -> None:
        """This process's first step has ended."""
        self.warmup_s = self.trained_s - self.before_s

    @property
    def trained_s(self) -> float:
        return self.before_s + (0.0 if self.started is None else time.monotonic() - self.started)

    def done(self, iteration: int, iterations: int) -> float:
        """The fraction of the schedule behind us: of the iterations, or of the time limit if it comes first."""
        if not self.limit_s:
            return min(1.0, iteration / iterations)
        trained_s = self.trained_s
        if trained_s >= self.limit_s:
            return 1.0
        by_time = (trained_s - self.warmup_s) / (self.limit_s - self.warmup_s)
        return min(1.0, max(iteration / iterations, by_time))


def run(task: Task, config: dict, out: Path, env: Env, start: int, iterations: int, best: float | None = None,
        trained_s: float = 0.0) -> int:
    """Train from ``start`` to ``iterations``, or until ``run.time_limit_min`` of training time
    (``trained_s`` of it spent before a resume); returns the exit code (0 done, 128+signal if interrupted).

    The learning rate follows the schedule's fraction done (``Clock.done``), so a time-limited run
    decays it over its minutes. Checkpoints every ``run.checkpoint_every`` iterations (keeping
    ``run.keep_last``), at the end and on SIGINT/SIGTERM; validates every ``run.val_every`` and keeps
    the best as ``best.pth``. A NaN or Inf loss raises ``TrainingError`` without writing over the last
    good checkpoint.
    """
    rc = config["run"]
    limit = rc["time_limit_min"]
    logger = Logger(out, env.is_main, iterations, start, limit)
    clock = Clock(None if limit is None else 60.0 * limit, trained_s)
    last_saved: Path | None = None

    def save(iteration: int, best_miou: float | None) -> Path:
        nonlocal last_saved
        states = gathered_rng_states(env)
        if env.is_main:
            last_saved = save_checkpoint(checkpoint_path(out, iteration), task.models, arch=task.arch,
                                         optimizers=task.optimizers, iteration=iteration, config=config,
                                         extra={"rng": states, "best_miou": best_miou,
                                                "trained_s": round(clock.trained_s, 3),
                                                "scaler": task.precision.scaler.state_dict()})
            for old in sorted((out / "checkpoints").glob(CHECKPOINT_GLOB))[: -rc["keep_last"]]:
                old.unlink()
        return checkpoint_path(out, iteration)

    iteration = start
    try:
        with _Signals() as signals:
            done, _ = _agree(clock.done(iteration, iterations), False, env)
            # a fresh run trains at least one step, so that there is a checkpoint to call final
            last = iteration >= iterations or (iteration > 0 and done >= 1.0)
            clock.start()
            while not last:
                values = task.step(iteration, done)
                bad = [k for k, v in values.items() if not math.isfinite(v)]
                if bad:
                    kept = f"the last good checkpoint is {last_saved or latest_checkpoint(out) or 'none (no checkpoint yet)'}"
                    raise TrainingError(f"{', '.join(bad)} is {values[bad[0]]} at iteration {iteration}; "
                                        f"stopped, {kept} (lower optim.lr or check the data)")
                iteration += 1
                if iteration == start + 1:
                    clock.warmed_up()
                done, signalled = _agree(clock.done(iteration, iterations), signals.received is not None, env)
                last = iteration == iterations or done >= 1.0
                logger.advance()
                if iteration % rc["log_every"] == 0 or last:
                    logger.log(iteration, values)
                if iteration % rc["checkpoint_every"] == 0 or last:
                    save(iteration, best)  # before validating: a validation that fails loses no training
                if rc["val_every"] and (iteration % rc["val_every"] == 0 or last):
                    miou = task.validate() if env.is_main else None
                    if miou is not None:
                        logger.log(iteration, {"val_miou": miou})
                    if _improved(miou, best, env):
                        best = miou  # only the main process validates, and only it writes best_miou
                        save(iteration, best)  # (again, if just saved: the file records the new best)
                        if env.is_main:
                            (out / "best.pth").unlink(missing_ok=True)
                            os.link(checkpoint_path(out, iteration), out / "best.pth")
                if signalled:
                    path = save(iteration, best)
                    if env.is_main:
                        print(f"\ninterrupted at iteration {iteration}: saved {path}; continue with --resume",
                              file=sys.stderr)
                    return 128 + (signals.received or signal.SIGINT)
    finally:
        logger.close()
    if env.is_main:
        if iteration < iterations:
            print(f"\ntime limit of {limit:g} min reached at iteration {iteration}", file=sys.stderr)
        (out / "final.pth").unlink(missing_ok=True)
        os.link(checkpoint_path(out, iteration), out / "final.pth")
    return 0


def start_iteration(out: Path, resume: bool) -> int:
    """The iteration a run in ``out`` starts at (the latest checkpoint's when resuming, else 0), refusing to mix
    with another run unless resuming. Writes nothing: ``record_config`` does, once the run is built."""
    start = 0
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out}: a file; expected the run's folder (new, or a run's to --resume)", EXIT_USAGE)
    if resume:
        path = latest_checkpoint(out)
        if path is None:
            raise TrainingError(f"{out}: --resume given but no complete checkpoint found there", EXIT_USAGE)
        start = load_checkpoint(path).iteration
    elif (out / "checkpoints").is_dir() and any((out / "checkpoints").glob(CHECKPOINT_GLOB)):
        raise TrainingError(f"{out}: already holds checkpoints of a run; use --resume to continue it or another --out",
                            EXIT_USAGE)
    return start


def record_config(out: Path, config: dict, env: Env) -> None:
    """Create ``out`` with the run's ``config.yaml``: after the networks, data and ``--init`` files were read,
    so that a run refused for one of them leaves no folder behind."""
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "config.yaml", dump(config))


# --- mixed precision and resume ------------------------------------------------------------------------

#: values of ``run.amp``
AMPS = ("none", "bf16", "fp16")


class Precision:
    """Arithmetic of the training step: fp32 (``none``, as the reference trains) or autocast to
    bf16 / fp16 (with a gradient scaler for fp16) on the run's device, CUDA or CPU."""

    def __init__(self, env: Env, amp: str) -> None:
        if amp not in AMPS:
            raise TrainingError(f"run.amp must be one of {', '.join(AMPS)}, got {amp!r}", EXIT_USAGE)
        self.enabled = amp != "none"
        self.dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        self.device_type = env.device.type
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=amp == "fp16")

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def backward(self, loss: torch.Tensor) -> None:
        """Add the gradients of ``loss`` (scaled for fp16) to the parameters' ``.grad``."""
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Apply the accumulated gradients (unscaled; skipped if fp16 produced Inf/NaN)."""
        self.scaler.step(optimizer)


def place(module: nn.Module, env: Env, channels_last: bool) -> nn.Module:
    module = module.to(env.device)
    if channels_last and env.device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return module


def resume(task: Task, path: Path, env: Env) -> tuple[float | None, float]:
    """Restore networks, optimisers, the fp16 gradient scaler (its scale and growth tracker: a fresh one would
    skip steps the uninterrupted run took) and this rank's RNG state; returns the best mIoU and the seconds
    trained so far (for ``run.time_limit_min``)."""
    from .checkpoint import load_weights

    # onto the CPU: the RNG states must stay there (torch and CUDA take them as CPU byte tensors, numpy as an
    # array); load_state_dict copies the weights, and the optimisers' state, onto each parameter's device
    ckpt = load_checkpoint(path, map_location="cpu")
    for role, module in task.models.items():
        if role not in ckpt.models:
            raise TrainingError(f"{path}: has no {role!r} network to resume", EXIT_USAGE)
        load_weights(unwrap(module), ckpt.models[role], path)
    for name, optimizer in task.optimizers.items():
        if name not in ckpt.optimizers:
            raise TrainingError(f"{path}: has no {name!r} optimiser state to resume", EXIT_USAGE)
        try:
            optimizer.load_state_dict(ckpt.optimizers[name])
        except ValueError:  # its parameter groups differ: the set of trained parameters is not the run's
            raise TrainingError(f"{path}: the {name!r} optimiser state does not fit this run's trainable parameters "
                                "(model.frozen_stages or loss.aux changed since the run started?): resume with the "
                                "run's own settings", EXIT_USAGE) from None
    scaler = task.precision.scaler
    if scaler.is_enabled() and ckpt.extra.get("scaler"):  # empty: saved by a run without fp16
        scaler.load_state_dict(ckpt.extra["scaler"])
    states = ckpt.extra.get("rng", [])
    if len(states) == env.world_size:
        set_rng_state(states[env.rank])
    elif env.is_main:
        print(f"warning: {path} holds RNG states of {len(states)} processes, this run has {env.world_size}: "
              "continuing with fresh random streams", file=sys.stderr)
    return ckpt.extra.get("best_miou"), float(ckpt.extra.get("trained_s", 0.0))
