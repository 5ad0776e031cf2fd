"""Dataset loaders, DANNet transforms and the procedural generator, on generated data in a temp dir."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from runtime.classes import IGNORE_INDEX
from train.data import (DarkZurichPairs, DatasetError, EvalTransform, PairTransform, SegmentationDataset,
                        TrainTransform, build_dataset, cityscapes_samples)
from train.data.synth import LAYOUTS, PAIRS_CSV, generate

SIZE = (64, 128)
# Cityscapes labelId -> trainId, typed out from the Cityscapes definition (independent of runtime.classes)
CS_LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                     26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    for layout in LAYOUTS:
        generate(root / layout, layout, 8, SIZE, seed=0)
    return root


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_generator_is_deterministic_per_seed(tmp_path: Path) -> None:
    a, b, c = (generate(tmp_path / n, "darkzurich", 3, SIZE, seed=s) for n, s in (("a", 5), ("b", 5), ("c", 6)))
    assert tree_digest(a) == tree_digest(b) != tree_digest(c)


def test_generator_covers_all_classes_and_nights_are_darker(synth: Path) -> None:
    seen: set[int] = set()
    for p in (synth / "cityscapes").rglob("*_gtFine_labelIds.png"):
        raw = np.asarray(Image.open(p))
        seen |= {CS_LABEL_TO_TRAIN.get(int(v), IGNORE_INDEX) for v in np.unique(raw)}
    for p in synth.rglob("*_labelTrainIds.png"):
        seen |= set(np.unique(np.asarray(Image.open(p))).tolist())
    assert set(range(19)) <= seen
    day = [np.asarray(Image.open(p)).mean() for p in (synth / "darkzurich/rgb_anon/train/day").rglob("*.png")]
    night = [np.asarray(Image.open(p)).mean() for p in (synth / "darkzurich/rgb_anon/train/night").rglob("*.png")]
    assert np.mean(night) < 0.6 * np.mean(day)
    assert max(night) < min(day)


def test_cityscapes_labels_are_mapped_to_train_ids(synth: Path) -> None:
    samples = cityscapes_samples(synth / "cityscapes", "train")
    assert len(samples) == 8 and all(s.label_ids for s in samples)
    ds = SegmentationDataset(samples, EvalTransform(scale=1.0))
    item = ds[0]
    raw = np.asarray(Image.open(samples[0].label))
    expected = np.vectorize(lambda v: CS_LABEL_TO_TRAIN.get(int(v), IGNORE_INDEX))(raw)
    assert item["image"].shape == (3, *SIZE) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.int64
    np.testing.assert_array_equal(item["label"].numpy(), expected)
    assert IGNORE_INDEX in expected  # the ego vehicle is not evaluated


def test_label_train_ids_take_precedence(synth: Path, tmp_path: Path) -> None:
    root = tmp_path / "cs"
    shutil.copytree(synth / "cityscapes", root)
    sample = cityscapes_samples(root, "val")[0]
    train_ids = sample.label.with_name(sample.label.name.replace("_labelIds", "_labelTrainIds"))
    Image.fromarray(np.full(SIZE, 7, dtype=np.uint8)).save(train_ids)
    again = cityscapes_samples(root, "val")[0]
    assert again.label == train_ids and not again.label_ids
    assert (SegmentationDataset([again], EvalTransform(scale=1.0))[0]["label"] == 7).all()


@pytest.mark.parametrize("name, root, n, has_invalid", [
    ("darkzurich-val", "darkzurich", 2, True), ("darkzurich-test", "darkzurich", 2, False),
    ("nightdriving", "nightdriving", 2, False), ("acdc-night", "acdc", 2, True), ("synthetic", ".", 2, True),
    ("cityscapes", "cityscapes", 2, False),
])
def test_eval_datasets(synth: Path, name: str, root: str, n: int, has_invalid: bool) -> None:
    ds = build_dataset(name, synth / root, transform=EvalTransform(scale=0.5))
    assert len(ds) == n
    item = ds[0]
    assert item["image"].shape == (3, SIZE[0] // 2, SIZE[1] // 2)
    if name == "darkzurich-test":
        assert "label" not in item and item["name"].startswith("GOPR0364/")
        return
    assert item["label"].shape == SIZE  # full-resolution label
    values = set(torch.unique(item["label"]).tolist())
    assert values <= set(range(19)) | {IGNORE_INDEX} and len(values) > 3
    assert ("invalid" in item) == has_invalid
    if has_invalid:
        assert item["invalid"].dtype == torch.bool and item["invalid"].shape == SIZE
    if name == "nightdriving":  # coarse labels: class boundaries are ignored
        assert IGNORE_INDEX in values


def test_train_transform_shapes_and_padding(synth: Path) -> None:
    torch.manual_seed(0)
    ds = SegmentationDataset(cityscapes_samples(synth / "cityscapes", "train"), TrainTransform(crop=(96, 160)))
    item = ds[0]
    assert item["image"].shape == (3, 96, 160) and item["label"].shape == (96, 160)
    # scale <= 1 on a 64x128 image: the crop must be padded with ignore at the bottom and right
    assert (item["label"][64:] == IGNORE_INDEX).all() and (item["label"][:, 128:] == IGNORE_INDEX).all()


def test_train_transform_reproducible_per_seed(synth: Path) -> None:
    ds = SegmentationDataset(cityscapes_samples(synth / "cityscapes", "train"), TrainTransform(crop=(48, 48)))
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        runs.append(torch.stack([ds[i]["image"] for i in range(4)]))
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def normalised(image: Image.Image) -> torch.Tensor:
    """ImageNet normalisation written out (independent of train.data.transforms.to_tensor)."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (x - mean) / std


def test_training_images_are_resized_bicubic_and_scaled_sizes_rounded_down() -> None:
    """As the reference's joint transforms: images bicubic, labels nearest, ``int(size * scale)``.
    A 43x43 image at scale 0.5 becomes 21x21 (rounding would give 22 and a random crop); a crop
    of 21 then takes it whole, and the pair's 21 -> 13 resize is bicubic too. Evaluation resizes
    bilinear: 43x43 at scale 0.3 to 12x12."""
    g = np.random.default_rng(0)
    image = Image.fromarray(g.integers(0, 256, (43, 43, 3), dtype=np.uint8))
    label = g.integers(0, 19, (43, 43), dtype=np.uint8)
    x, y = TrainTransform(crop=(21, 21), scale=(0.5, 0.5), flip=False)(image, label)
    assert torch.allclose(x, normalised(image.resize((21, 21), Image.BICUBIC)), atol=1e-6)
    assert torch.equal(y, torch.from_numpy(np.array(Image.fromarray(label).resize((21, 21), Image.NEAREST))).long())
    night, day = PairTransform(crop=21, scale=(0.5, 0.5), resize_to=13, flip=False)(image, image.transpose(
        Image.FLIP_TOP_BOTTOM))
    assert torch.allclose(night, normalised(image.resize((21, 21), Image.BICUBIC).resize((13, 13), Image.BICUBIC)),
                          atol=1e-6)
    assert torch.allclose(day, normalised(image.transpose(Image.FLIP_TOP_BOTTOM).resize((21, 21), Image.BICUBIC)
                                          .resize((13, 13), Image.BICUBIC)), atol=1e-6)
    # evaluation resizes bilinear (torchvision's default Resize in the reference's evaluate.py)
    x, _ = EvalTransform(scale=0.3)(image, None)
    assert torch.allclose(x, normalised(image.resize((12, 12), Image.BILINEAR)), atol=1e-6)


@pytest.mark.parametrize("scale, input_hw", [(0.5, (540, 960)), (0.55, (592, 1056)), (0.3, (324, 576)),
                                             (0.001, (4, 4))])
def test_evaluation_input_sides_are_multiples_of_4_and_labels_keep_their_size(scale: float,
                                                                              input_hw: tuple[int, int]) -> None:
    """The relighting net gives back only sides that are multiples of 4: ``--scale 0.55`` of a 1080x1920 frame
    asked for 594 rows and stopped the evaluation. Each side goes to the nearest multiple of 4 (DANNet's own
    540x960 at 0.5 is one already); the label stays 1080x1920, where the predictions are scored."""
    image = Image.new("RGB", (1920, 1080))
    label = np.zeros((1080, 1920), dtype=np.uint8)
    x, y = EvalTransform(scale=scale)(image, label)
    assert tuple(x.shape[1:]) == input_hw and tuple(y.shape) == (1080, 1920)


def test_pair_gets_identical_scale_crop_flip(synth: Path, tmp_path: Path) -> None:
    """By construction: with every day image replaced by its night image, the two outputs must be equal."""
    root = tmp_path / "dz"
    shutil.copytree(synth / "darkzurich", root)
    for line in (root / PAIRS_CSV).read_text().splitlines():
        night, day = line.split(",")
        shutil.copy(root / "rgb_anon" / f"{night}_rgb_anon.png", root / "rgb_anon" / f"{day}_rgb_anon.png")
    ds = DarkZurichPairs(root, root / PAIRS_CSV, PairTransform(crop=48, scale=(0.9, 1.1), resize_to=32))
    torch.manual_seed(0)
    for i in range(len(ds)):
        item = ds[i]
        assert item["night"].shape == (3, 32, 32)
        assert torch.equal(item["night"], item["day"])
    # and the day images differ from the night ones in the real set
    real = DarkZurichPairs(synth / "darkzurich", synth / "darkzurich" / PAIRS_CSV, PairTransform(crop=48, resize_to=None))
    item = real[0]
    assert item["night"].shape == (3, 48, 48) and not torch.equal(item["night"], item["day"])


def test_config_roots_read_home_for_a_tilde_no_shell_expanded(synth: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``--set data.source.root=~/data/cityscapes`` (one word: the shell leaves the ~) and YAML configs name the
    user's home as a shell would: the datasets built from them are the ones there."""
    from train.config import load_config
    from train.factory import source_dataset, target_dataset, val_dataset

    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(synth, tmp_path / "data")
    config = load_config("synthetic-cpu", ["data.source.root=~/data/cityscapes", "data.target.root=~/data/darkzurich",
                                           f"data.target.pairs=~/data/darkzurich/{PAIRS_CSV}"])
    assert [s.image for s in source_dataset(config).samples] == \
        [s.image for s in cityscapes_samples(tmp_path / "data" / "cityscapes", "train")]
    night, day = (tmp_path / "data" / "darkzurich" / PAIRS_CSV).read_text().splitlines()[0].split(",")
    assert target_dataset(config)[0]["name"] == Path(night).name
    assert len(val_dataset("darkzurich-val", "~/data/darkzurich", config)) == \
        len(build_dataset("darkzurich-val", tmp_path / "data" / "darkzurich"))


# --- errors: one line naming the path, raised when the dataset is built -------------------------

def _one_line(e: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(e.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_root_and_wrong_layout(synth: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as e:
        build_dataset("darkzurich-val", tmp_path / "nowhere")
    _one_line(e, "nowhere", "not found")
    with pytest.raises(DatasetError) as e:  # a Cityscapes folder given as Dark Zurich
        build_dataset("darkzurich-val", synth / "cityscapes")
    _one_line(e, "rgb_anon", "expected Dark Zurich")
    with pytest.raises(DatasetError) as e:
        build_dataset("no-such-set", synth)
    _one_line(e, "unknown dataset")


def test_empty_split_and_missing_label(synth: Path, tmp_path: Path) -> None:
    root = tmp_path / "cs"
    (root / "leftImg8bit" / "val" / "x").mkdir(parents=True)
    with pytest.raises(DatasetError) as e:
        cityscapes_samples(root, "val")
    _one_line(e, "leftImg8bit/val", "no images", "empty split")
    shutil.copytree(synth / "cityscapes", root, dirs_exist_ok=True)
    next((root / "gtFine" / "train").rglob("*_labelIds.png")).unlink()
    with pytest.raises(DatasetError) as e:
        cityscapes_samples(root, "train")
    _one_line(e, "_gtFine_labelIds.png", "not found")


def test_pair_file_missing_and_bad_csv(synth: Path, tmp_path: Path) -> None:
    root = tmp_path / "dz"
    shutil.copytree(synth / "darkzurich", root)
    lines = (root / PAIRS_CSV).read_text().splitlines()
    (root / "rgb_anon" / f"{lines[2].split(',')[1]}_rgb_anon.png").unlink()
    with pytest.raises(DatasetError) as e:
        DarkZurichPairs(root, root / PAIRS_CSV, PairTransform())
    _one_line(e, f"{PAIRS_CSV}:3", "day image", "not found")
    (root / "bad.csv").write_text("only_one_column\n")
    with pytest.raises(DatasetError) as e:
        DarkZurichPairs(root, root / "bad.csv", PairTransform())
    _one_line(e, "bad.csv:1", "night_stem,day_stem")
    with pytest.raises(DatasetError) as e:
        DarkZurichPairs(root, root / "absent.csv", PairTransform())
    _one_line(e, "absent.csv", "not found")


def test_a_day_image_of_another_size_than_its_night_image(synth: Path, tmp_path: Path) -> None:
    """The pair's one scale, crop and flip are taken on the night image's grid: a day image of another size was
    stretched onto it, silently. Refused when the pairs are read, naming the CSV line and both sizes."""
    root = tmp_path / "dz"
    shutil.copytree(synth / "darkzurich", root)
    night, day = ((root / "rgb_anon" / f"{stem}_rgb_anon.png")
                  for stem in (root / PAIRS_CSV).read_text().splitlines()[1].split(","))
    Image.open(day).resize((SIZE[1] // 2, SIZE[0] // 2)).save(day)
    with pytest.raises(DatasetError) as e:
        DarkZurichPairs(root, root / PAIRS_CSV, PairTransform())
    _one_line(e, f"{PAIRS_CSV}:2: day image {day} is {SIZE[0] // 2}x{SIZE[1] // 2} but night image {night} is "
                 f"{SIZE[0]}x{SIZE[1]}; expected the same size")


def test_unreadable_image(synth: Path, tmp_path: Path) -> None:
    root = tmp_path / "nd"
    shutil.copytree(synth / "nightdriving", root)
    victim = next(root.rglob("*_leftImg8bit.png"))
    victim.write_bytes(b"not a png at all")
    with pytest.raises(DatasetError) as e:
        build_dataset("nightdriving", root)
    _one_line(e, victim.name, "unreadable image")


# --- command line ---------------------------------------------------------------------------------

def test_cli_synth_and_preview(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "train.cli"]
    out = subprocess.run([*run, "synth", "--out", str(tmp_path), "--layout", "darkzurich", "--count", "2",
                          "--size", "48x96", "--quiet"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    png = tmp_path / "grid.png"
    out = subprocess.run([*run, "preview", "--dataset", "darkzurich-val", "--root", str(tmp_path / "darkzurich"),
                          "--out", str(png)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    grid = np.asarray(Image.open(png))
    assert grid.shape[0] == 2 * (192 + 4) and grid.shape[1] == 2 * 384  # 2 rows of image | label
    # --pairs as training reads data.target.pairs: relative to the root, whatever the working folder, or absolute
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for pairs in ("zurich_dn_pair_train.csv", str(tmp_path / "darkzurich" / "zurich_dn_pair_train.csv")):
        out = subprocess.run([*run, "preview", "--dataset", "darkzurich-pairs", "--root", str(tmp_path / "darkzurich"),
                              "--pairs", pairs, "--crop", "32", "--out", str(png)], capture_output=True, text=True,
                             cwd=elsewhere)
        assert out.returncode == 0, out.stderr
    bad = subprocess.run([*run, "preview", "--dataset", "acdc-night", "--root", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert bad.returncode == 3 and bad.stderr.count("\n") == 1 and "not found" in bad.stderr  # 3: dataset
    bad = subprocess.run([*run, "synth", "--out", str(tmp_path), "--size", "big"], capture_output=True, text=True)
    assert bad.returncode == 2 and "expected HxW" in bad.stderr
    # a second set into the first one's folder would mix them (both read as one); a size with no room for a scene
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for argv, words in ((["--layout", "darkzurich"], f"{tmp_path / 'darkzurich'}: already exists and is not an empty"),
                        (["--layout", "acdc", "--size", "16x64"], "--size 16x64: the generator draws images of at "
                                                                  "least 32x32")):
        bad = subprocess.run([*run, "synth", "--out", str(tmp_path), "--count", "1", *argv], capture_output=True,
                             text=True)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and words in bad.stderr, bad.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_generated_set_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    """The set is written beside its folder and renamed into place when complete: what an interrupted run left
    (``<out>.partial``) is started over, and an empty folder made beforehand is taken."""
    left = tmp_path / "dz.partial" / "rgb_anon" / "stale.png"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"from an interrupted run")
    (tmp_path / "dz").mkdir()
    root = generate(tmp_path / "dz", "darkzurich", 2, SIZE, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dz"] and not list(root.rglob("stale.png"))
    assert tree_digest(root) == tree_digest(generate(tmp_path / "again", "darkzurich", 2, SIZE, seed=1))
