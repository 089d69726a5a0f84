from dataclasses import dataclass, field

import pytest

from hyperadapt.config import apply_overrides, from_dict, load_config
from hyperadapt.training import TrainConfig


@dataclass
class Outer:
    name: str = "x"
    tags: list[str] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: y\ntrain:\n  steps: 7\n")
    cfg = load_config(Outer, path, ["train.lr=0.5", "tags=[a, b]"])
    assert cfg.name == "y" and cfg.train.steps == 7 and cfg.train.lr == 0.5 and cfg.tags == ["a", "b"]
    assert isinstance(cfg.train, TrainConfig)


def test_unknown_key_names_allowed_keys():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['train.stpes'\].*allowed"):
        from_dict(Outer, {"train": {"stpes": 3}})


def test_bad_override_and_values():
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["train.steps"])
    with pytest.raises(ValueError, match="train.steps must be at least 1"):
        from_dict(Outer, {"train": {"steps": 0}})
    with pytest.raises(FileNotFoundError):
        load_config(Outer, "nope.yaml")


@dataclass
class Words:
    name: str = "x"
    path: str | None = "somewhere"
    flag: bool = False
    tags: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)


def test_string_settings_take_yamls_words_literally(tmp_path):
    # YAML 1.1 reads no/yes/off as booleans and an empty value as null; a setting typed str takes the text
    from hyperadapt.methods.continual.config import ContinualConfig

    cfg = load_config(ContinualConfig, None, ["train.precision=no", "unseen="])
    assert cfg.train.precision == "no" and cfg.unseen == ""
    path = tmp_path / "c.yaml"
    path.write_text("name: yes\npath:\nflag: yes\ntags: [no, off, 'on']\nextra: {a: no}\ntrain:\n  precision: no\n")
    words = load_config(Words, path, ["flag=off"])
    assert (words.name, words.path, words.flag, words.tags) == ("yes", None, False, ["no", "off", "on"])
    assert words.extra == {"a": False} and words.train.precision == "no"  # untyped values keep YAML's reading
    assert load_config(Words, None, ["name=", "path=~", "name=null"]).name == "null"
    assert load_config(Words, None, ["path=null"]).path is None  # str | None: null is None
    with pytest.raises(ValueError, match="train.steps must be an integer, got False"):
        load_config(Words, None, ["train.steps=no"])
    with pytest.raises(ValueError, match="flag must be true or false, got 'maybe'"):
        load_config(Words, None, ["flag=maybe"])
