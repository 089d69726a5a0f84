"""The LoRA targets are ``target_modules`` (PEFT's name) in every config; the old name ``targets`` (TAGI's
``targets``, SwitchCIT's ``lora.targets``) still loads: with a warning from YAML or an override, silently
from a saved run, and a run saved under the old name resumes under the new one."""

from __future__ import annotations

import json
import warnings

import pytest
import yaml

from hyperadapt.config import from_dict, load_config, to_dict
from hyperadapt.methods import load_run
from hyperadapt.methods.baselines.meta import MetaICLConfig, ReptileConfig
from hyperadapt.methods.baselines.multitask_lora import MultiTaskLoraConfig
from hyperadapt.methods.continual.runner import config_differences
from hyperadapt.methods.switch import SwitchConfig
from hyperadapt.methods.tagi import HypernetConfig, TagiConfig
from hyperadapt.methods.tagi.hypter import HypterConfig, train_hypter
from hyperadapt.runs import RunDir, changed_keys, flatten
from hyperadapt.testing import tiny_model
from hyperadapt.training import TrainConfig

CONFIGS = (TagiConfig, HypterConfig, SwitchConfig, MultiTaskLoraConfig, MetaICLConfig, ReptileConfig)


def old(data: dict) -> dict:
    """``data`` as the code before the rename saved it: ``target_modules`` spelled ``targets``."""
    return {("targets" if k == "target_modules" else k): old(v) if isinstance(v, dict) else v for k, v in data.items()}


@pytest.mark.parametrize("cls", CONFIGS)
def test_every_config_names_its_targets_target_modules_and_round_trips(cls, tmp_path):
    keys = [k.rsplit(".", 1)[-1] for k in flatten(to_dict(cls()))]
    assert "target_modules" in keys and "targets" not in keys
    cfg = cls(
        **{
            **vars(cls()),
            **(
                {"lora": type(cls().lora)(target_modules=["v_proj"])}
                if cls is SwitchConfig
                else {"target_modules": ["v_proj"]}
            ),
        }
    )
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config(cls, path) == cfg == from_dict(cls, to_dict(cfg))


def test_the_old_key_in_yaml_or_an_override_warns_once_and_gives_the_same_config(tmp_path):
    path = tmp_path / "tagi.yaml"
    path.write_text("rank: 4\ntargets: [q_proj, down_proj]\n")
    with pytest.warns(FutureWarning, match=r"tagi.yaml: config key renamed \(targets is now target_modules\)") as seen:
        cfg = load_config(TagiConfig, path)
    assert len([w for w in seen if issubclass(w.category, FutureWarning)]) == 1
    assert cfg == TagiConfig(rank=4, target_modules=["q_proj", "down_proj"])

    path = tmp_path / "switch.yaml"
    path.write_text("lora: {rank: 2, targets: [v_proj]}\n")
    with pytest.warns(FutureWarning, match=r"lora\.targets is now lora\.target_modules"):
        assert load_config(SwitchConfig, path).lora.target_modules == ["v_proj"]
    with pytest.warns(FutureWarning, match="targets is now target_modules"):
        assert load_config(HypterConfig, None, ["targets=[k_proj]"]).target_modules == ["k_proj"]

    # an override replaces the file's value under either name; both names in one file are refused
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config(TagiConfig, path.with_name("tagi.yaml"), ["target_modules=[q_proj]"]).target_modules == [
            "q_proj"
        ]
    new = path.with_name("new.yaml")
    new.write_text("target_modules: [q_proj]\n")
    with pytest.warns(FutureWarning, match="targets is now target_modules"):
        assert load_config(TagiConfig, new, ["targets=[k_proj]"]).target_modules == ["k_proj"]
    both = path.with_name("both.yaml")
    both.write_text("targets: [v_proj]\ntarget_modules: [q_proj]\n")
    with pytest.raises(ValueError, match="targets and target_modules are the same setting: keep target_modules"):
        load_config(TagiConfig, both)


def test_a_saved_config_with_the_old_key_loads_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tagi = from_dict(TagiConfig, old(to_dict(TagiConfig(target_modules=["o_proj"]))))
        switch = from_dict(SwitchConfig, old(to_dict(SwitchConfig())))
    assert tagi.target_modules == ["o_proj"] and switch == SwitchConfig()


def test_run_integrity_compares_an_old_key_under_its_new_name(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    saved = to_dict(TagiConfig())
    (run.path / "run.json").write_text(json.dumps({"kind": "train", "method": "tagi", "config": old(saved)}))
    assert run.check("tagi", saved) is not None  # the same value under the new name: not a change
    with pytest.raises(ValueError, match=r"another config \(changed: target_modules\)"):
        run.check("tagi", to_dict(TagiConfig(target_modules=["q_proj"])))

    switch = to_dict(SwitchConfig())
    changed = to_dict(SwitchConfig(lora=type(SwitchConfig().lora)(target_modules=["q_proj"])))
    assert changed_keys(old(switch), switch) == [] and config_differences(old(switch), switch) == []
    assert changed_keys(old(switch), changed) == ["lora.target_modules"]
    assert config_differences(old(switch), changed) == ["lora.target_modules"]


def test_a_run_saved_with_the_old_key_resumes_refuses_a_change_and_loads(jsonl_data, tmp_path):
    train = TrainConfig(steps=3, batch_size=4, max_length=64, save_every=1)
    cfg = HypterConfig(
        model="tiny",
        data=f"jsonl:{jsonl_data}",
        rank=2,
        max_instruction_tokens=16,
        target_modules=["q_proj", "v_proj"],
        hypernet=HypernetConfig(hidden=16, blocks=1),
        train=train,
    )
    run = tmp_path / "run"

    def save_old_keys() -> None:  # the run.json the code before the rename wrote
        record = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**record, "config": old(record["config"])}))

    train_hypter(cfg, run, model_and_tokenizer=tiny_model(), stop_at=1)
    save_old_keys()
    other = HypterConfig(**{**vars(cfg), "target_modules": ["q_proj"]})
    with pytest.raises(ValueError, match=r"changed: target_modules"):
        train_hypter(other, run, model_and_tokenizer=tiny_model())
    train_hypter(cfg, run, model_and_tokenizer=tiny_model())  # resumes: the same config, spelled anew
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished" and record["config"]["target_modules"] == ["q_proj", "v_proj"]
    save_old_keys()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        method = load_run(run, tiny_model())
    assert method.name == "hypter" and set(method.hypernet.shapes) == {
        f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "v_proj")
    }
