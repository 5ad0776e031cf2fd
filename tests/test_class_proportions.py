"""Class weights from the run's own source labels (``data.source.class_proportions: measured``): counted as the
labels say, recorded in the run, and applied by training, ``eval`` and the exported tail alike. The expected
weights are computed here from the paper's eq. 1-2 directly, not through ``class_weights``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runtime.classes import CITYSCAPES_PROPORTIONS, LABEL_ID_TO_TRAIN_ID, NUM_CLASSES
from train.checkpoint import load_checkpoint, save_checkpoint
from train.cli import main as train_main
from train.config import ConfigError, load_config
from train.data import DatasetError
from train.data.proportions import proportions_of
from train.data.synth import generate
from train.factory import train_weights
from train.models import RelightNet, build_segmenter

from test_training import data  # noqa: F401  (the generated day and night data, 4 each at 64x128)


def paper_weights(proportions: np.ndarray, std: float) -> np.ndarray:
    """Eq. 1-2: w' = -log a, standardised with the unbiased std, scaled to ``std`` around 1."""
    raw = [-np.log(a) for a in proportions]
    mean = sum(raw) / len(raw)
    spread = (sum((r - mean) ** 2 for r in raw) / (len(raw) - 1)) ** 0.5
    return np.array([(r - mean) / spread * std + 1 for r in raw])


def counted_shares(label_folder: Path) -> np.ndarray:
    """Each class's share of the labelled pixels, read from the labelIds PNGs pixel by pixel."""
    counts = np.zeros(NUM_CLASSES)
    for path in sorted(label_folder.rglob("*_labelIds.png")):
        ids, n = np.unique(np.asarray(Image.open(path)), return_counts=True)
        for label_id, count in zip(ids.tolist(), n.tolist()):
            if label_id in LABEL_ID_TO_TRAIN_ID:
                counts[LABEL_ID_TO_TRAIN_ID[label_id]] += count
    return counts / counts.sum()


def test_a_run_measures_the_classes_of_its_source_records_them_and_trains_with_them(data: Path,
                                                                                   tmp_path: Path) -> None:
    settings = {"data.source.root": data / "cityscapes", "data.source.crop": "[48, 48]", "data.workers": 0,
                "data.source.class_proportions": "measured", "pretrain.iterations": 1, "run.val_every": 0}
    argv = ["--config", "synthetic-cpu", *(a for k, v in settings.items() for a in ("--set", f"{k}={v}"))]
    assert train_main(["pretrain", *argv, "--out", str(tmp_path / "run")]) == 0
    expected = counted_shares(data / "cityscapes" / "gtFine" / "train")
    absent = expected == 0  # 4 small images need not show every class: those take the rarest share
    expected[absent] = expected[~absent].min()
    expected /= expected.sum()
    recorded = load_checkpoint(tmp_path / "run" / "final.pth").config["data"]["source"]["class_proportions"]
    np.testing.assert_allclose(recorded, expected, rtol=1e-12)
    resumed = load_config(str(tmp_path / "run" / "config.yaml"))  # what --resume reads: the numbers, not "measured"
    assert resumed["data"]["source"]["class_proportions"] == recorded
    np.testing.assert_allclose(train_weights(resumed, torch.device("cpu")).numpy(),
                               paper_weights(expected, resumed["loss"]["weights_std"]), rtol=1e-6)
    # resumed with the same command after the labels changed: the run keeps the numbers it started with
    for label in (data / "cityscapes" / "gtFine" / "train").rglob("*_labelIds.png"):
        changed = label.with_name("changed.png")
        Image.fromarray(np.full((64, 128), 7, np.uint8)).save(changed)  # labelId 7: all road
        label.rename(label.with_name(label.name + ".kept"))
        changed.rename(label)
    try:
        assert train_main(["pretrain", *argv, "--set", "pretrain.iterations=2", "--resume",
                           "--out", str(tmp_path / "run")]) == 0
    finally:
        for kept in (data / "cityscapes" / "gtFine" / "train").rglob("*.kept"):
            kept.rename(kept.with_name(kept.name.removesuffix(".kept")))
    resumed = load_checkpoint(tmp_path / "run" / "final.pth")
    assert resumed.iteration == 2 and resumed.config["data"]["source"]["class_proportions"] == recorded


def test_an_absent_class_takes_the_rarest_share() -> None:
    counts = np.arange(NUM_CLASSES, dtype=np.int64) * 10  # class 0 absent, class 1 the rarest present
    shares, absent = proportions_of(counts)
    assert absent == ["road"]
    assert shares[0] == shares[1] and np.isclose(shares.sum(), 1.0)
    np.testing.assert_allclose(shares[2:] / shares[1], np.arange(2, NUM_CLASSES))
    with pytest.raises(DatasetError, match="no pixel"):
        proportions_of(np.zeros(NUM_CLASSES))


@pytest.mark.parametrize("value", ["measure", "[0.5, 0.5]", f"[{', '.join(['0.1'] * 18)}, 0]"])
def test_other_values_are_refused_naming_the_key(value: str) -> None:
    written = load_config("reference", [f"data.source.class_proportions=[{', '.join(['1e-3'] * 19)}]"])
    assert written["data"]["source"]["class_proportions"] == [0.001] * 19  # YAML 1.1 reads 1e-3 as text
    with pytest.raises(ConfigError, match="class_proportions.*cityscapes, measured or a list of 19 positive"):
        load_config("reference", [f"data.source.class_proportions={value}"])


def test_a_std_that_gives_a_class_no_positive_weight_is_refused(tiny_graphs: dict[str, Path], tmp_path: Path,
                                                                capsys) -> None:
    """Road 80% of the pixels, the other 18 classes 20% together: eq. 1-2 (written out here) give road the
    weight 1 - 0.3 * 4.24 < 0 at std 0.3, which the Cityscapes table keeps clear of up to 0.52. Such a std is
    refused before any work, naming the setting and the std from which these proportions fail; a smaller one is
    taken. Training refuses it too (loss.weights_std); eval names the run's eval.weights_std when it came from
    there; a sweep's default stds stop below it."""
    from benchmarks.cli import main as bench_main
    from train.factory import class_weights_of, weights_std_limit

    shares = np.full(NUM_CLASSES, 0.2 / (NUM_CLASSES - 1))
    shares[0] = 0.8
    config = {"data": {"source": {"class_proportions": shares.tolist()}}}
    w = -np.log(shares)
    z = (w - w.mean()) / w.std(ddof=1)
    limit = -1 / z.min()  # road's weight 1 + z_road * std reaches 0
    assert 0.2 < limit < 0.3 and weights_std_limit(config) == (pytest.approx(limit, rel=1e-5), "road")
    assert weights_std_limit({})[0] == pytest.approx(0.52, abs=0.01)  # the Cityscapes table: road, as documented
    assert class_weights_of(config, 0.99 * limit).min() > 0
    with pytest.raises(ConfigError, match=rf"^--weights-std 0.3: .* give road a weight <= 0 from std {limit:.3f} on"):
        class_weights_of(config, 0.3)
    with pytest.raises(ConfigError, match="^loss.weights_std 0.3: "):
        train_weights({**config, "loss": {"weights_std": 0.3}}, torch.device("cpu"))
    tiny = load_checkpoint(tiny_graphs["checkpoint"])
    for std, given, named in ((0.3, ["--weights-std", "0.3"], "--weights-std 0.3"),
                              (0.25, [], "eval.weights_std (recorded by the checkpoint's run) 0.25")):
        run = save_checkpoint(tmp_path / "run.pth", dict(tiny.models), arch="pspnet",
                              config={**tiny.config, **config, "eval": {"weights_std": std, "reweight": "logits"}})
        assert train_main(["eval", "--checkpoint", str(run), "--dataset", "synthetic", "--root",
                           str(tmp_path / "none"), *given]) == 2  # before the dataset is read (there is none)
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and f"{named}: the class proportions of this run give road" in error
    root = generate(tmp_path / "dz", "darkzurich", 2, (64, 128), seed=4)
    assert bench_main(["sweep", "--checkpoint", str(run), "--dataset", "darkzurich-val", "--root", str(root),
                       "--scale", "1", "--device", "cpu", "--json", str(tmp_path / "s.json")]) == 0
    swept = [float(s) for s in json.loads((tmp_path / "s.json").read_text())["miou"]]
    assert swept == [0, 0.02, 0.05, 0.08, 0.12, 0.16, 0.2]  # the default stds below the limit
    assert "--stds: 0.25, 0.3 left out" in capsys.readouterr().out


def test_eval_and_the_exported_tail_weigh_the_classes_as_the_run_did(data: Path, tmp_path: Path, capsys) -> None:
    """A run whose source had Cityscapes' class shares reversed (roads rare, trains common): ``eval`` and the ONNX
    graph must both apply the weights of those shares, which on this model give other labels than Cityscapes'."""
    from export import ExportSpec, to_onnx, to_torch_program
    from runtime.segmenter import Segmenter
    from train.data import EvalTransform, build_dataset
    from train.evaluate import evaluate, predict

    proportions = CITYSCAPES_PROPORTIONS[::-1] / CITYSCAPES_PROPORTIONS.sum()
    torch.manual_seed(0)
    segmenter, light = build_segmenter("pspnet", backbone="resnet18").eval(), RelightNet(channels=16).eval()
    checkpoint = save_checkpoint(tmp_path / "run.pth", {"segmenter": segmenter, "light": light}, arch="pspnet",
                                 config={"model": {"backbone": "resnet18"},
                                         "data": {"source": {"class_proportions": proportions.tolist()}}})
    expected = paper_weights(proportions, 0.16)
    night = build_dataset("synthetic", data, transform=EvalTransform(scale=1.0))

    capsys.readouterr()
    assert train_main(["eval", "--checkpoint", str(checkpoint), "--dataset", "synthetic", "--root", str(data),
                       "--scale", "1.0", "--json", str(tmp_path / "eval.json")]) == 0
    ours = evaluate(segmenter, light, night, torch.tensor(expected, dtype=torch.float32), progress=False).miou
    assert json.loads((tmp_path / "eval.json").read_text())["miou"] == pytest.approx(ours, abs=1e-12)

    size = (64, 128)
    graph = to_onnx(checkpoint, tmp_path / "run.onnx", ExportSpec(input_size=size, output_size=size),
                    say=lambda s: None)
    model = Segmenter(str(graph), "onnxruntime")
    np.testing.assert_allclose(model.info.weights, expected, rtol=1e-6)
    item = night[0]
    frame = np.asarray(Image.open(night.samples[0].image).convert("RGB"))
    labels = model.process(frame)
    with torch.no_grad():
        by_run = predict(segmenter, light, item["image"][None], size, torch.tensor(expected, dtype=torch.float32))
        by_cityscapes = predict(segmenter, light, item["image"][None], size,
                                torch.tensor(paper_weights(CITYSCAPES_PROPORTIONS, 0.16), dtype=torch.float32))
    assert (by_run != by_cityscapes).any()  # the proportions matter for this model
    assert (labels == by_run[0].numpy()).mean() > 0.999  # ONNX Runtime vs PyTorch: rounding near ties only
    program = to_torch_program(checkpoint, tmp_path / "run.pt2", ExportSpec(input_size=size, output_size=size),
                               say=lambda s: None)
    assert (Segmenter(str(program), "torch").process(frame) == by_run[0].numpy()).mean() > 0.999


def test_precision_measures_the_proportions_as_a_run_does(data: Path, capsys) -> None:
    # 32-pixel crops: a bf16 step takes 30 s at 48 on a CPU without native bf16
    settings = {"data.source.root": data / "cityscapes", "data.target.root": data / "darkzurich",
                "data.source.crop": "[32, 32]", "data.target.crop": 40, "data.target.resize_to": 32,
                "data.workers": 0, "data.source.class_proportions": "measured", "run.val_every": 0}
    argv = ["--config", "synthetic-cpu", *(a for k, v in settings.items() for a in ("--set", f"{k}={v}"))]
    assert train_main(["precision", *argv, "--steps", "1", "--amp", "bf16"]) == 0
    assert "class proportions measured on" in capsys.readouterr().out
