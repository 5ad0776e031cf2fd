"""A checkpoint whose confidence is worth testing: the tests' random networks are sure of nearly every pixel
(their softmax saturates: most levels are 255), where a wrong rounding or a misread buffer of confidence
levels would go unseen. Scaling the classifier down spreads the levels over the whole range."""
from __future__ import annotations

from pathlib import Path

from train.checkpoint import load_checkpoint, save_checkpoint

#: logits x 1/16 by default: a power of two scales every product and sum exactly, so the labels stay the
#: checkpoint's
SCALE = 2.0 ** -4
#: PSPNet's last convolution (the auxiliary ``dsn`` head is not part of inference)
CLASSIFIER = "head.1"


def unsure(checkpoint: Path, out: Path, scale: float = SCALE) -> Path:
    """``checkpoint`` (a PSPNet in our format) with its classifier's weight and bias scaled by ``scale``."""
    saved = load_checkpoint(checkpoint)
    models = {role: dict(state) for role, state in saved.models.items()}
    for name in (f"{CLASSIFIER}.weight", f"{CLASSIFIER}.bias"):
        models["segmenter"][name] = models["segmenter"][name] * scale
    return save_checkpoint(out, models, arch=saved.arch, config=saved.config)
