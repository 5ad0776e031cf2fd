"""Training configs: a value that the run could not use is refused when the config loads, one line naming the key
and what it takes, rather than hours later at the first step or validation that reads it."""
from __future__ import annotations

from pathlib import Path

import pytest

from train.config import ConfigError, load_config

#: every option that names one of a few behaviours, with the names it takes, written out from
#: train/configs/reference.yaml's comments and train/README.md (not read from the code under test)
OPTION_VALUES = {
    "model.arch": ("pspnet", "deeplab", "refinenet"),
    "model.backbone": ("resnet101", "resnet50", "resnet18", "efficientnet_lite0"),
    "data.source.dataset": ("cityscapes", "acdc-night"),
    "data.val.dataset": ("cityscapes", "darkzurich-val", "nightdriving", "acdc-night", "synthetic"),
    "pretrain.val_dataset": ("cityscapes", "darkzurich-val", "nightdriving", "acdc-night", "synthetic"),
    "optim.optimizer": ("sgd", "adamw"),
    "loss.exposure_target": ("normalized", "intensity"),
    "loss.exposure_norm": ("l2", "l1"),
    "loss.tv_norm": ("reference", "paper"),
    "loss.seg_norm": ("reference", "paper"),
    "loss.pseudo_label": ("reference_blend", "paper"),
    "loss.static_probs": ("static_softmax", "full_softmax"),
    "loss.static_neighbourhood": ("reference_aliased", "3x3"),
    "loss.target_resolution": ("crop", "input"),
    "eval.reweight": ("logits", "probs"),
    "run.amp": ("none", "bf16", "fp16"),
}


def value_of(config: dict, key: str) -> object:
    for part in key.split("."):
        config = config[part]
    return config


@pytest.mark.parametrize("key", OPTION_VALUES)
def test_an_option_takes_its_names_and_refuses_a_misspelt_one_naming_them(key: str) -> None:
    """``eval.reweight=prob`` used to load and stop the run at its first validation (an "internal error"
    after up to ``run.checkpoint_every`` iterations of lost work); a misspelt ``loss.*`` at the first step."""
    for name in OPTION_VALUES[key]:
        assert value_of(load_config("reference", [f"{key}={name}"]), key) == name
    misspelt = OPTION_VALUES[key][-1] + "s"
    with pytest.raises(ConfigError) as error:
        load_config("reference", [f"{key}={misspelt}"])
    message = str(error.value)
    assert "\n" not in message and f"'{key}'" in message and repr(misspelt) in message
    assert all(name in message for name in OPTION_VALUES[key]), message


@pytest.mark.parametrize("override, words", [
    ("optim.betas_d=[0.9]", "'optim.betas_d' must be a list of 2"),
    ("optim.betas_d=0.9", "'optim.betas_d' must be a list of 2"),
    ("data.source.crop=[48]", "'data.source.crop' must be a list of 2"),
    ("data.source.scale=[0.5, 0.7, 1.0]", "'data.source.scale' must be a list of 2"),
    ("data.source.crop=[48.5, 48]", "'data.source.crop' must be an integer"),
    ("data.target.scale=[0.9, fast]", "'data.target.scale' must be a number"),
])
def test_a_list_has_the_reference_length_and_element_type(override: str, words: str) -> None:
    """``optim.betas_d=[0.9]`` used to load and fail when the discriminators' optimiser was built."""
    with pytest.raises(ConfigError, match=words):
        load_config("reference", [override])


def test_null_only_where_it_means_something() -> None:
    """Null (also ``--set key=`` with nothing after ``=``) is a value only where the config documents it: no resize
    of the target crop, no validation, no time limit; elsewhere it would reach the run as None."""
    config = load_config("reference", ["data.target.resize_to=null", "data.val.dataset=null",
                                       "pretrain.val_dataset=", "run.time_limit_min=null"])
    assert config["data"]["target"]["resize_to"] is None and config["data"]["val"]["dataset"] is None
    assert config["pretrain"]["val_dataset"] is None and config["run"]["time_limit_min"] is None
    for override in ("optim.lr=", "loss.tv_norm=null", "eval.reweight=", "data.source.crop=[48, null]"):
        with pytest.raises(ConfigError, match=f"'{override.split('=')[0]}' must"):
            load_config("reference", [override])


def test_every_key_of_the_reference_config_says_what_it_is() -> None:
    """README: every key is defined in train/configs/reference.yaml with a comment; a value line without one is a
    key a user has to guess."""
    reference = Path(__file__).resolve().parents[1] / "train" / "configs" / "reference.yaml"
    bare = [line.strip() for line in reference.read_text().splitlines()
            if ":" in line and not line.lstrip().startswith("#") and line.split(":", 1)[1].strip() and "#" not in line]
    assert bare == []


def test_a_base_is_read_beside_the_file_that_names_it_and_a_missing_one_names_that_file(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    """``base:`` works like an include: a relative path is the including file's neighbour, whatever the working
    folder, and a base that is not there is an error naming the file that asked for it."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "common.yaml").write_text("base: synthetic-cpu\noptim:\n  iterations: 7\n")
    (tmp_path / "configs" / "mine.yaml").write_text("base: common.yaml\nrun:\n  seed: 3\n")
    monkeypatch.chdir(tmp_path)  # not the configs' folder
    config = load_config("configs/mine.yaml")
    assert config["optim"]["iterations"] == 7 and config["run"]["seed"] == 3
    assert config["model"]["backbone"] == load_config("synthetic-cpu")["model"]["backbone"]
    (tmp_path / "configs" / "typo.yaml").write_text("base: comon.yaml\n")
    with pytest.raises(ConfigError, match=r"configs/typo.yaml: base 'comon.yaml': no such config file or preset"):
        load_config("configs/typo.yaml")
