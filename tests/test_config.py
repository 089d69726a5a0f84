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
