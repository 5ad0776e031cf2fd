"""argparse types every command shares: sizes as ``HxW`` and numbers with a range, checked at parse time.

Sizes are height first everywhere (``540x960``), as PyTorch and the rest of the project write them.
Numbers are refused when they are outside their range or not finite (``nan``, ``inf``), so no option
reaches a division or an index with a value that produces NaN or nothing.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

from .classes import MAX_WEIGHTS_STD, REWEIGHTS, TEST_WEIGHTS_STD

#: the segmentation architectures a checkpoint may hold (``train.models.SEGMENTERS``, which needs torch; the
#: command lines name them without it so that ``--help`` stays light)
ARCHITECTURES = ("pspnet", "deeplab", "refinenet")


def _pair(text: str) -> tuple[int, int]:
    try:
        first, second = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (height x width, e.g. 540x960), got {text!r}") from None
    if first <= 0 or second <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive HxW (height x width, e.g. 540x960), got {text!r}")
    return first, second


def size_hw(text: str) -> tuple[int, int]:
    """``HxW`` -> (H, W)."""
    return _pair(text)


def landscape_size_hw(text: str) -> tuple[int, int]:
    """``HxW`` of a camera or video mode -> (H, W); taller than wide is refused with a hint.

    ``dannet-run --input-size`` was once written width first (``1280x720``). Read as HxW, every such
    landscape mode is taller than wide, and silently swapping it would hide which convention was meant,
    so it is refused and the user writes it height first. (Portrait modes: ``CaptureOptions`` in Python.)
    """
    h, w = _pair(text)
    if h > w:  # most likely WxH: a mode `h` wide and `w` high
        raise argparse.ArgumentTypeError(f"{text} is taller than wide: sizes are HxW (height first), so a "
                                         f"{h}-wide, {w}-high mode is {w}x{h}")
    return h, w


def _range_text(low: float | None, high: float | None, low_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    return f"in {'(' if low_open else '['}{low}, {high}]"


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An int in [low, high] (no upper bound when ``high`` is None)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {_range_text(low, high, False)}, "
                                             f"got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected an integer {_range_text(low, high, False)}, got {value}")
        return value
    return parse


def number(low: float, high: float | None = None, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite float in [low, high], or (low, high] with ``low_open``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected a number {_range_text(low, high, low_open)}, got {text!r}")
        return value
    return parse


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """``--device`` of a command that runs a checkpoint in PyTorch (``train.engine.select_device`` reads it)."""
    parser.add_argument("--device", default="auto",
                        help="auto (the CUDA GPU where there is one, else the CPU), cpu, cuda or cuda:N (default auto)")


def add_network_flags(parser: argparse.ArgumentParser) -> None:
    """``--light``, ``--arch`` and ``--backbone`` of a command that runs a checkpoint: what a released file, which
    holds one network and names neither its backbone nor, in words, its architecture, leaves to the user
    (``train.evaluate.networks_of`` reads them, and refuses a flag that contradicts the file)."""
    parser.add_argument("--light", help="relighting weights when the checkpoint has none (a released *_light.pth; "
                                        "without it a released segmentation file runs unrelit)")
    parser.add_argument("--arch", choices=ARCHITECTURES,
                        help="architecture when the file does not say (default pspnet; released files are "
                             "recognised from their keys)")
    parser.add_argument("--backbone", help="backbone when the file does not say (default resnet101; released "
                                           "files are ResNet-101)")


def add_reweighting_flags(parser: argparse.ArgumentParser) -> None:
    """``--weights-std`` and ``--reweight`` of a command that scores or ships a checkpoint; both default to None:
    what the checkpoint's run validated with (``train.evaluate.recorded_reweighting``)."""
    parser.add_argument("--weights-std", type=number(0, MAX_WEIGHTS_STD), default=None,
                        help=f"test-time class weights std, in [0, {MAX_WEIGHTS_STD}] (0: no re-weighting; default: "
                             f"eval.weights_std of the checkpoint's run, {TEST_WEIGHTS_STD} for released files); the "
                             "weights come from the class proportions the checkpoint's run trained with "
                             "(data.source.class_proportions; Cityscapes' for released files)")
    parser.add_argument("--reweight", choices=REWEIGHTS, default=None,
                        help="multiply logits (reference code) or probabilities (paper) (default: eval.reweight of "
                             "the checkpoint's run, logits for released files)")
