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


def test_every_help_text_of_a_config_is_shown_with_its_key_and_default():
    import ast
    from pathlib import Path

    from hyperadapt.config import settings_help
    from hyperadapt.demo.config import DemoConfig
    from hyperadapt.methods.switch import SwitchConfig
    from hyperadapt.registry import method_entry, method_names

    src = Path(__file__).resolve().parents[1] / "src" / "hyperadapt"
    written = set()  # every metadata={"help": "..."} in the package
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "help" for k in node.keys):
                written |= {
                    ast.literal_eval(v)
                    for k, v in zip(node.keys, node.values, strict=True)
                    if isinstance(k, ast.Constant) and k.value == "help"
                }
    registered = {method_entry(name).config_cls for name in method_names()} - {None}
    shown = "\n".join(settings_help(cls) for cls in [*registered, SwitchConfig, DemoConfig])
    assert len(written) > 50 and not [t for t in written if t not in shown]
    lines = settings_help(SwitchConfig).splitlines()
    assert any(line.startswith("train.steps = 150 ") and "(an integer)" in line for line in lines)  # its own default
    assert any(line.startswith('unseen = "auto" ') for line in lines)
