"""Temporal stabilisers: label maps that do not flicker from frame to frame at night.

Night frames are noisy, so a pixel near a class boundary or in the dark can change its label on one frame
and change back on the next. A stabiliser sees each frame's labels (and confidence levels, for models
exported with ``--confidence``) and returns the labels to show:

- ``hysteresis``: a pixel keeps the label it shows until a new label has been predicted there for ``frames``
  consecutive frames, or (``confidence`` set) the new label comes with a confidence level at least that high.
- ``ema``: per pixel, an exponential moving average (weight ``1/frames``) of the evidence for two labels: the
  one shown and its latest challenger. A frame's evidence for its label is its confidence level (255 for a
  model without confidence: one vote). The challenger replaces the shown label once its average is higher.
  Our graphs output the winning label and its probability, not the 19 class scores, so an EMA of every
  class's score is not possible without exporting the logits (19x the output bytes); the two labels that
  matter at a flickering pixel are tracked instead.

Both keep their state in uint8 maps at the labels' size (hysteresis 3 maps, ema 4) and compute in
uint8/uint16: no float copy of a frame. The state starts afresh (the frame's labels shown as they are) on a
scene cut, when the label size changes, and when the caller says the source was reopened
(``update(..., fresh=True)``: a camera reconnect). A cut is either of: the camera frame (when given) differs
from the previous one by more than ``cut_difference`` levels on average (on every 8th pixel each way: a copy
with 64x fewer pixels, kept as int16: 32x fewer bytes than the uint8 frame), or more than ``cut_share`` of the
pixels are predicted other than shown. On the night drive the frame difference tells cuts apart (33-54 levels at
cuts, at most 23 within a scene) where the labels of a weak model do not (up to 46% of the pixels change
within a scene, as few as 26% at a cut).

    from runtime.temporal import TemporalFilter, TemporalOptions
    stable = TemporalFilter(TemporalOptions("hysteresis", frames=3))
    for frame in frames:
        labels = stable.update(segmenter.process(frame))
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DannetError

TEMPORAL_MODES = ("none", "hysteresis", "ema")
#: a model without confidence: each frame's prediction counts as one full vote
FULL_VOTE = 255
#: scene-cut detection compares every THUMB_STEP-th pixel of each row and column of consecutive frames
THUMB_STEP = 8


@dataclass(frozen=True)
class TemporalOptions:
    mode: str = "none"                 # none | hysteresis | ema
    frames: int = 3                    # hysteresis: frames a new label must persist; ema: 1 / weight of a frame
    confidence: float | None = None    # hysteresis: adopt a new label at once at this confidence (0-1)
    cut_share: float = 0.8             # a scene cut: more than this share of pixels predicted other than shown,
    cut_difference: float = 28.0       # ... or a mean absolute frame difference above this many levels (0-255)

    def __post_init__(self) -> None:
        if self.mode not in TEMPORAL_MODES:
            raise DannetError(f"--temporal: expected one of {', '.join(TEMPORAL_MODES)}, got {self.mode!r}")
        if not 1 <= self.frames <= 255:
            raise DannetError(f"--temporal-frames: expected an integer in [1, 255], got {self.frames}")
        if self.confidence is not None and (self.mode != "hysteresis" or not 0 <= self.confidence <= 1):
            raise DannetError("--temporal-confidence: expected a probability in [0, 1] with --temporal hysteresis, "
                              f"got {self.confidence} with --temporal {self.mode}")
        if not 0 < self.cut_share <= 1:
            raise DannetError(f"--temporal-cut: expected a share in (0, 1], got {self.cut_share}")
        if not 0 < self.cut_difference <= 255:
            raise DannetError(f"--temporal-cut-difference: expected levels in (0, 255], got {self.cut_difference}")

    def check_model(self, has_confidence: bool, model: str) -> None:
        """A one-line error when the options need a confidence output the model does not have."""
        if self.confidence is not None and not has_confidence:
            raise DannetError(f"--temporal-confidence: {model} has no confidence output; export it with "
                              "dannet-export onnx|pt2 --confidence, or stabilise by --temporal-frames alone")


class TemporalFilter:
    """Stabilises a stream of label maps (one stream: one camera); see the module docstring."""

    def __init__(self, options: TemporalOptions) -> None:
        self.options = options
        self.shown: np.ndarray | None = None   # the labels shown last (uint8)
        self.resets = 0                        # times the state started afresh after the first frame
        self.thumbnail: np.ndarray | None = None  # every THUMB_STEP-th pixel of the last camera frame (int16)

    def update(self, labels: np.ndarray, confidence: np.ndarray | None = None, fresh: bool = False,
               frame: np.ndarray | None = None) -> np.ndarray:
        """The labels to show for this frame's ``labels`` (uint8 H x W; ``confidence``: its uint8 levels;
        ``frame``: the camera frame, any size, to detect scene cuts by). Returns the filter's own map: copy it
        to keep it past the next call. ``fresh``: the source was reopened, start afresh."""
        if self.options.mode == "none":
            return labels
        if self.options.confidence is not None and confidence is None:
            raise DannetError("--temporal-confidence: this frame came without confidence levels")
        cut = frame is not None and self._frame_changed(frame)
        changed = labels != self.shown if self.shown is not None and self.shown.shape == labels.shape else None
        if changed is None or fresh or cut or np.count_nonzero(changed) > self.options.cut_share * labels.size:
            self.resets += self.shown is not None
            self._start(labels, confidence)
            return self.shown
        if self.options.mode == "hysteresis":
            self._hysteresis(labels, confidence, changed)
        else:
            self._ema(labels, confidence)
        return self.shown

    def _frame_changed(self, frame: np.ndarray) -> bool:
        """Whether ``frame`` differs from the previous one by more than ``cut_difference`` levels on average."""
        thumbnail = frame[::THUMB_STEP, ::THUMB_STEP].astype(np.int16)
        previous, self.thumbnail = self.thumbnail, thumbnail
        if previous is None or previous.shape != thumbnail.shape:
            return False
        return float(np.abs(thumbnail - previous).mean()) > self.options.cut_difference

    def _start(self, labels: np.ndarray, confidence: np.ndarray | None) -> None:
        self.shown = labels.copy()
        # hysteresis: the label waiting to be adopted and for how many frames in a row it was predicted;
        # ema: the challenger and the averages of the evidence for the shown label and for the challenger
        self.pending = labels.copy()
        self.count = np.zeros_like(labels)
        if self.options.mode == "ema":
            self.support = confidence.copy() if confidence is not None else np.full_like(labels, FULL_VOTE)
            self.challenge = np.zeros_like(labels)

    def _hysteresis(self, labels: np.ndarray, confidence: np.ndarray | None, changed: np.ndarray) -> None:
        again = labels == self.pending
        np.minimum(self.count, 254, out=self.count)  # saturate instead of wrapping after 255 frames
        self.count += 1
        np.copyto(self.count, 1, where=~again)     # a new candidate: seen once
        np.copyto(self.count, 0, where=~changed)   # the shown label predicted: nothing pending
        np.copyto(self.pending, labels)
        adopt = self.count >= self.options.frames
        if self.options.confidence is not None:
            adopt |= confidence >= round(255 * self.options.confidence)
        adopt &= changed
        np.copyto(self.shown, labels, where=adopt)
        np.copyto(self.count, 0, where=adopt)

    def _ema(self, labels: np.ndarray, confidence: np.ndarray | None) -> None:
        evidence = confidence if confidence is not None else np.full_like(labels, FULL_VOTE)
        for_shown, for_challenger = labels == self.shown, labels == self.pending
        new_challenger = ~for_shown & ~for_challenger
        self.pending[new_challenger] = labels[new_challenger]  # its earlier evidence is none
        self.challenge[new_challenger] = 0
        for_challenger |= new_challenger
        self.support = self._average(self.support, np.where(for_shown, evidence, 0))
        self.challenge = self._average(self.challenge, np.where(for_challenger, evidence, 0))
        swap = self.challenge > self.support
        self.shown[swap], self.pending[swap] = self.pending[swap], self.shown[swap]
        self.support[swap], self.challenge[swap] = self.challenge[swap], self.support[swap]

    def _average(self, mean: np.ndarray, evidence: np.ndarray) -> np.ndarray:
        """``mean + (evidence - mean) / frames``, rounded, in uint16 (at most 255 * 255), back to uint8."""
        n = self.options.frames
        total = mean.astype(np.uint16)
        total *= n - 1
        total += evidence
        total += n // 2
        total //= n
        return total.astype(np.uint8)
