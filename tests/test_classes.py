"""The class table and DANNet's class weights (paper eq. 1-2), checked against independent arithmetic."""
from __future__ import annotations

import math
import statistics
import subprocess
import sys

import numpy as np
import pytest

from runtime import classes


def weights_by_hand(std: float, avg: float = 1.0) -> list[float]:
    """Eq. 1-2 with the standard library only: w' = -log a, standardised with the (n-1) std."""
    a = [0.36869696, 0.06084986, 0.22824049, 0.00655399, 0.00877272, 0.01227341, 0.00207795,
         0.0055127, 0.15928651, 0.01157818, 0.04018982, 0.01218957, 0.00135122, 0.06994545,
         0.00267456, 0.00235192, 0.00232904, 0.00098658, 0.00413907]
    w = [-math.log(x) for x in a]
    m, s = statistics.mean(w), statistics.stdev(w)
    return [(x - m) / s * std + avg for x in w]


@pytest.mark.parametrize("std, road, motorcycle", [(0.05, 0.904, 1.069), (0.16, 0.693, 1.220)])
def test_class_weights_match_paper(std: float, road: float, motorcycle: float) -> None:
    w = classes.class_weights(std)
    assert w.shape == (19,) and w.dtype == np.float32
    assert w[0] == pytest.approx(road, abs=5e-4)
    assert w[classes.CLASS_NAMES.index("motorcycle")] == pytest.approx(motorcycle, abs=5e-4)
    np.testing.assert_allclose(w, weights_by_hand(std), rtol=1e-6)
    assert statistics.mean(w.tolist()) == pytest.approx(1.0, abs=1e-6)
    assert statistics.stdev(w.tolist()) == pytest.approx(std, rel=1e-5)


def test_class_weights_from_own_proportions() -> None:
    w = classes.class_weights(0.1, avg=2.0, proportions=[0.5, 0.25, 0.25])
    # -log: [0.693, 1.386, 1.386] -> standardised [-1.1547, 0.577, 0.577]
    np.testing.assert_allclose(w, [2 - 0.11547, 2 + 0.057735, 2 + 0.057735], atol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        classes.class_weights(0.1, proportions=[0.5, 0.0])
    # equally frequent classes (a uniform table, or a source showing one class, the absent ones taking its share)
    np.testing.assert_array_equal(classes.class_weights(0.16, proportions=[3.0] * 19), np.ones(19, np.float32))


def test_table_is_consistent() -> None:
    assert len(classes.CLASS_NAMES) == classes.NUM_CLASSES == 19
    assert classes.PALETTE.shape == (19, 3) and classes.PALETTE.dtype == np.uint8
    assert classes.STATIC_CLASSES == tuple(range(11))
    assert classes.CLASS_NAMES[classes.STATIC_CLASSES[-1]] == "sky"
    assert len(set(map(tuple, classes.PALETTE.tolist()))) == 19
    assert sorted(classes.LABEL_ID_TO_TRAIN_ID.values()) == list(range(19))
    assert classes.CITYSCAPES_PROPORTIONS.sum() == pytest.approx(1.0, abs=1e-3)


def test_label_ids_to_train_ids_and_colorize() -> None:
    label_ids = np.array([[7, 8, 0], [26, 33, 34]], dtype=np.uint8)  # road, sidewalk, unlabeled, car, bicycle, ?
    train_ids = classes.label_ids_to_train_ids(label_ids)
    np.testing.assert_array_equal(train_ids, [[0, 1, 255], [13, 18, 255]])
    rgb = classes.colorize(train_ids)
    assert rgb.shape == (2, 3, 3)
    assert tuple(rgb[0, 0]) == (128, 64, 128) and tuple(rgb[1, 0]) == (0, 0, 142) and tuple(rgb[0, 2]) == (0, 0, 0)


def test_runtime_imports_without_torch() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "import runtime, runtime.classes, runtime.cli\n"
            "print(runtime.classes.class_weights(0.16)[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("0.69")
