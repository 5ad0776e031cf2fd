"""How far autocast training (bf16, fp16) drifts from fp32 in the first steps of a DANNet run.

The same adaptation (same config, seed, initial weights, batches and dropout masks) runs once in
fp32 and once per autocast type; after every step the loss terms and the gradients each optimiser
applied are compared with the fp32 run's. Each run follows its own weights, so step k's
difference is the rounding of that step plus the drift accumulated before it.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from .engine import seed_everything, setup_env


@dataclass
class Trajectory:
    """Per step: the loss terms, and per optimiser the gradients it applied (one flat fp32
    vector; None where an fp16 step was skipped for an Inf/NaN gradient)."""

    losses: list[dict[str, float]]
    grads: list[dict[str, torch.Tensor | None]]


def trajectory(config: dict, amp: str, steps: int, init: list[str] = ()) -> Trajectory:
    """``steps`` DANNet steps of ``config`` with ``run.amp = amp`` from the config's seed, starting
    from the ``init`` checkpoints (as ``dannet-train adapt --init``)."""
    from .dannet import DANNetTask

    config = copy.deepcopy(config)
    config["run"]["amp"] = amp
    seed_everything(config["run"]["seed"])
    task = DANNetTask(config, setup_env(config["run"]["device"]), list(init), 0)
    applied: dict[str, torch.Tensor] = {}
    for name, optimizer in task.optimizers.items():
        def step(*args, _name=name, _optimizer=optimizer, _step=optimizer.step, **kwargs):
            applied[_name] = torch.cat([p.grad.detach().float().flatten().cpu()
                                        for g in _optimizer.param_groups for p in g["params"] if p.grad is not None])
            return _step(*args, **kwargs)
        optimizer.step = step
    out = Trajectory([], [])
    for i in range(steps):
        applied.clear()
        out.losses.append(task.step(i))
        out.grads.append({name: applied.get(name) for name in task.optimizers})
    return out


def _relative(value: float | torch.Tensor | None, reference: float | torch.Tensor) -> float:
    """``|value - reference| / |reference|`` (L2 norms for tensors); NaN for a skipped step."""
    if value is None:
        return math.nan
    if isinstance(reference, torch.Tensor):
        return ((value.double() - reference.double()).norm() / reference.double().norm()).item()
    return abs(value - reference) / abs(reference) if reference else abs(value)


def drift(config: dict, steps: int, amps: tuple[str, ...] = ("bf16", "fp16"),
          init: list[str] = ()) -> list[dict[str, float | str | int]]:
    """One row per (autocast type, step): the relative difference of every loss term and of each
    optimiser's gradient (``grad_generator``, ``grad_discriminators``) to the fp32 run."""
    fp32 = trajectory(config, "none", steps, init)
    rows = []
    for amp in amps:
        run = trajectory(config, amp, steps, init)
        for i in range(steps):
            row: dict[str, float | str | int] = {"amp": amp, "step": i}
            row.update({k: _relative(v, fp32.losses[i][k]) for k, v in run.losses[i].items()
                        if k.startswith("loss")})
            row.update({f"grad_{name}": _relative(g, fp32.grads[i][name]) for name, g in run.grads[i].items()})
            rows.append(row)
    return rows


def table(rows: list[dict[str, float | str | int]]) -> str:
    """The rows as a Markdown table (relative differences, 2 significant digits)."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.1e}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines)
