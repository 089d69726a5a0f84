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


def test_with_steps_sets_every_training_stage_and_nothing_else():
    from hyperadapt import with_overrides, with_steps
    from hyperadapt.methods.baselines import MultiTaskLoraConfig
    from hyperadapt.methods.megan import MeganConfig
    from hyperadapt.methods.tagi import TagiConfig

    tagi = TagiConfig(rank=4)
    small = with_steps(tagi, 7)
    assert (small.train.steps, small.teachers.train.steps, small.pretrain.train.steps) == (7, 7, 7)
    assert small.rank == 4 and small.train.lr == tagi.train.lr and tagi.train.steps == 300  # a copy
    assert with_steps(MultiTaskLoraConfig(), 5).train.steps == 5
    assert with_steps(MeganConfig(), 3).train.steps == 3
    both = with_overrides(TagiConfig(), "rank=2", "teachers.train.batch_size=2")
    assert (both.rank, both.teachers.train.batch_size) == (2, 2)


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_with_steps_refuses_a_bad_count(steps):
    from hyperadapt import with_steps
    from hyperadapt.methods.tagi import TagiConfig

    with pytest.raises(ValueError, match="steps must be a whole number"):
        with_steps(TagiConfig(), steps)


def test_with_overrides_names_an_unknown_key():
    from hyperadapt import with_overrides
    from hyperadapt.methods.tagi import TagiConfig

    with pytest.raises(ValueError, match="trian"):
        with_overrides(TagiConfig(), "trian.steps=3")
