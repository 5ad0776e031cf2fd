"""A checkpoint whose confidence is worth testing: spread over the whole range of levels, where a wrong rounding
or a misread buffer of confidence levels would show. A random network's confidence depends on its classifier's
scale: He-initialised it saturates (most levels 255), at the N(0, 0.01) init every class is near 1/19 (levels
near 13). Rescaling the classifier's weights to a standard deviation near 0.02 spreads the levels."""
from __future__ import annotations

import math
from pathlib import Path

from train.checkpoint import load_checkpoint, save_checkpoint

#: classifier weight standard deviation that spreads a random PSPNet's confidence levels over 0-255
WEIGHT_STD = 0.02
#: PSPNet's last convolution (the auxiliary ``dsn`` head is not part of inference)
CLASSIFIER = "head.1"


def unsure(checkpoint: Path, out: Path, weight_std: float = WEIGHT_STD) -> Path:
    """``checkpoint`` (a PSPNet in our format) with its classifier's weight and bias scaled by the power of two
    nearest to ``weight_std / std(weight)``: a power of two scales every product and sum exactly, so the labels
    stay the checkpoint's."""
    saved = load_checkpoint(checkpoint)
    models = {role: dict(state) for role, state in saved.models.items()}
    weight = models["segmenter"][f"{CLASSIFIER}.weight"]
    scale = 2.0 ** round(math.log2(weight_std / weight.std().item()))
    for name in (f"{CLASSIFIER}.weight", f"{CLASSIFIER}.bias"):
        models["segmenter"][name] = models["segmenter"][name] * scale
    return save_checkpoint(out, models, arch=saved.arch, config=saved.config)
