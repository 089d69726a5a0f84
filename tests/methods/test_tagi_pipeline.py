"""TAGI end to end on a tiny model: teachers, two stages, resume, load, export to PEFT, instructions policy."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from hyperadapt.config import from_dict
from hyperadapt.core import conditioned
from hyperadapt.data import load_tasks
from hyperadapt.evaluation.harness import EvalConfig, evaluate
from hyperadapt.methods.tagi import (
    HypernetConfig,
    LossConfig,
    PretrainConfig,
    TagiConfig,
    TeacherConfig,
    export_adapter,
    load_tagi,
    train_tagi,
)
from hyperadapt.methods.tagi.hypter import HypterConfig, hypter_config, load_hypter, train_hypter
from hyperadapt.testing import tiny_model
from hyperadapt.training import TrainConfig


def tc(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=4, max_length=64, save_every=2, log_every=1)


def tiny_cfg(data, **kw) -> TagiConfig:
    fields = dict(
        model="tiny",
        data=f"jsonl:{data}",
        split="train",
        rank=2,
        max_instruction_tokens=16,
        hypernet=HypernetConfig(hidden=16, blocks=1),
        teachers=TeacherConfig(rank=2, train=tc(3)),
        pretrain=PretrainConfig(a_tokens=8, b_tokens=4, c_tokens=4, train=tc(3)),
        train=tc(4),
    )
    return TagiConfig(**{**fields, **kw})


def train_servable_tagi(data, model_dir, run):
    """A TAGI run on the tiny model at ``model_dir`` with only stage 2 (no pretraining, CE alone, one shared
    teacher adapter): the smallest run that the loaders, `release`, `adapter` and the server take."""
    cfg = tiny_cfg(
        data,
        model=str(model_dir),
        pretrain=PretrainConfig(enabled=False),
        losses=LossConfig(kl_weight=0, align_weight=0),
        shared_adapter=True,
    )
    train_tagi(cfg, run, model_and_tokenizer=tiny_model())
    return run


def test_two_stages_end_to_end_and_resume(jsonl_data, tmp_path):
    cfg, run = tiny_cfg(jsonl_data), tmp_path / "run"
    train_tagi(cfg, run, model_and_tokenizer=tiny_model(), stop_at=2)  # stops inside the teachers stage
    assert (run / "teachers" / "checkpoints" / "latest").exists() and not (run / "teachers" / "teachers.json").exists()
    method = train_tagi(cfg, run, model_and_tokenizer=tiny_model())
    for stage in ("teachers/teachers.json", "pretrain/hypernet", "finetune/hypernet", "hypernet"):
        assert (run / stage).exists(), stage
    assert json.loads((run / "teachers" / "checkpoints" / "step-0000003" / "state.json").read_text())["step"] == 3
    terms = [json.loads(line) for line in (run / "finetune" / "loss_terms.jsonl").read_text().splitlines()]
    assert {"ce", "kl", "align", "w_kl", "w_align"} <= set(terms[-1]) and terms[-1]["w_kl"] == 5.0
    assert method.setting == "def" and method.info["hypernet_parameters"] == method.hypernet.parameter_count()
    result = evaluate(method, load_tasks(f"jsonl:{jsonl_data}", "test"), EvalConfig(max_new_tokens=3, limit=2))
    assert result["method"] == "tagi" and result["mean"]["n"] == 4

    again = train_tagi(cfg, run, model_and_tokenizer=tiny_model())  # finished: loads, trains nothing
    loaded = load_tagi(run, model_and_tokenizer=tiny_model())
    for (n, p), q in zip(method.hypernet.state_dict().items(), loaded.hypernet.state_dict().values(), strict=True):
        assert torch.equal(p, q) and torch.equal(p, again.hypernet.state_dict()[n]), n


def test_stage_two_resumes_from_its_checkpoint(jsonl_data, tmp_path):
    cfg = tiny_cfg(jsonl_data, pretrain=PretrainConfig(enabled=False), losses=LossConfig(kl_weight=0, align_weight=0))
    whole = train_tagi(cfg, tmp_path / "a", model_and_tokenizer=tiny_model())
    assert not (tmp_path / "a" / "teachers").exists() and not (tmp_path / "a" / "pretrain").exists()
    train_tagi(cfg, tmp_path / "b", model_and_tokenizer=tiny_model(), stop_at=2)
    resumed = train_tagi(cfg, tmp_path / "b", model_and_tokenizer=tiny_model())
    for (n, p), q in zip(whole.hypernet.state_dict().items(), resumed.hypernet.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=n)


def test_teachers_are_reused_and_must_cover_the_tasks(jsonl_data, tmp_path):
    cfg = tiny_cfg(jsonl_data, pretrain=PretrainConfig(enabled=False), fusion=False)
    train_tagi(cfg, tmp_path / "first", model_and_tokenizer=tiny_model())
    reuse = tiny_cfg(
        jsonl_data,
        pretrain=PretrainConfig(enabled=False),
        teachers=TeacherConfig(rank=2, path=str(tmp_path / "first" / "teachers")),
    )
    method = train_tagi(reuse, tmp_path / "second", model_and_tokenizer=tiny_model())
    assert not (tmp_path / "second" / "teachers").exists() and method.setting == "def"
    info = json.loads((tmp_path / "first" / "teachers" / "teachers.json").read_text())
    assert info["groups"] == ["copy", "yesno"]
    info["groups"] = ["copy", "other"]
    (tmp_path / "first" / "teachers" / "teachers.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="no adapter for task"):
        train_tagi(reuse, tmp_path / "third", model_and_tokenizer=tiny_model())


def test_exported_adapter_gives_the_same_logits_in_peft(jsonl_data, tmp_path):
    cfg = tiny_cfg(
        jsonl_data,
        pretrain=PretrainConfig(enabled=False),
        losses=LossConfig(kl_weight=0, align_weight=0),
        target_modules=["q_proj", "v_proj", "down_proj"],
    )
    method = train_tagi(cfg, tmp_path / "run", model_and_tokenizer=tiny_model())
    with torch.no_grad():  # make the generated adapter clearly non-zero
        for head in method.hypernet.head_b.values():
            head.bias.normal_(std=0.1)
    out = export_adapter(method, "Repeat the input.", tmp_path / "adapter")
    assert (out / "instruction.txt").read_text() == "Repeat the input."
    peft_model = PeftModel.from_pretrained(tiny_model()[0], out)
    ids = method.tokenizer(["the answer is 12"], return_tensors="pt")
    theirs = peft_model(**ids).logits
    with torch.no_grad():
        base = method.model(**ids).logits
        with conditioned(method.model, lora=method.adapter("Repeat the input.")):
            ours = method.model(**ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, base)


def test_empty_and_over_long_instructions(jsonl_data, tmp_path):
    cfg = tiny_cfg(jsonl_data, pretrain=PretrainConfig(enabled=False), losses=LossConfig(kl_weight=0, align_weight=0))
    method = train_tagi(cfg, tmp_path / "run", model_and_tokenizer=tiny_model(), stop_at=1)
    for empty in ("", "   \n"):
        with pytest.raises(ValueError, match="empty instruction"):
            method.adapter(empty)
    long = " ".join(["the answer"] * 40)
    cached = method.vectors.encoder.cache_size()
    with pytest.warns(UserWarning, match="longer than max_instruction_tokens=16"):
        method.adapter(long)
    cleaned = method.vectors.clean(long)
    assert len(method.tokenizer(cleaned, add_special_tokens=False).input_ids) <= 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per instruction, and cached
        assert method.adapter(long).factors.keys() == method.adapter(cleaned).factors.keys()
    assert method.vectors.encoder.cache_size() == cached + 1


def test_per_example_conditioning_shares_one_adapter_per_instruction(jsonl_data, tmp_path):
    cfg = tiny_cfg(jsonl_data, pretrain=PretrainConfig(enabled=False), losses=LossConfig(kl_weight=0, align_weight=0))
    method = train_tagi(cfg, tmp_path / "run", model_and_tokenizer=tiny_model(), stop_at=1)
    same = method.batch_conditioning(["Repeat the input."] * 3)
    assert same.shared and same.batch_size == 3
    mixed = method.batch_conditioning(["Repeat the input.", "Answer yes or no.", "Repeat the input."])
    a, _ = next(iter(mixed.factors.values()))
    assert a.shape[0] == 3 and torch.equal(a[0], a[2]) and not torch.equal(a[0], a[1])


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="encoder must be one of"):
        TagiConfig(encoder="bert")
    with pytest.raises(ValueError, match="unsupported target_modules"):
        TagiConfig(target_modules=["lm_head"])
    with pytest.raises(ValueError, match="'def' or 'def2pos'"):
        TagiConfig(setting="none")
    with pytest.raises(ValueError, match="align_weight"):
        LossConfig(align_weight="tanh")
    with pytest.raises(ValueError, match="teachers.group"):
        TeacherConfig(group="domain")
    cfg = from_dict(TagiConfig, {"losses": {"align_weight": 0.5}, "train": {"steps": 7}, "fusion": False})
    assert cfg.losses.uses_align and not from_dict(LossConfig, {"align_weight": 0, "kl_weight": 0}).needs_teachers
    assert cfg.student_setting == "none" and cfg.train.steps == 7


def test_hypter_is_a_tagi_preset(jsonl_data, tmp_path):
    preset = HypterConfig()
    assert not preset.fusion and not preset.pretrain.enabled and not preset.losses.needs_teachers
    cfg = hypter_config(tiny_cfg(jsonl_data))
    assert isinstance(cfg, HypterConfig) and cfg.rank == 2 and not cfg.losses.needs_teachers
    train_hypter(cfg, tmp_path / "run", model_and_tokenizer=tiny_model())
    method = load_hypter(tmp_path / "run", model_and_tokenizer=tiny_model())
    assert method.name == "hypter" and method.setting == "none"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["finetune", "hypernet", "run.json"]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    (tmp_path / "run" / "run.json").write_text(json.dumps({**run, "method": "tagi"}))
    with pytest.raises(ValueError, match="not a hypter run"):
        load_hypter(tmp_path / "run", model_and_tokenizer=tiny_model())


def test_shared_adapter_residual_trains_in_stage_two_only_and_exports(jsonl_data, tmp_path):
    cfg = tiny_cfg(jsonl_data, shared_adapter=True)
    method = train_tagi(cfg, tmp_path / "run", model_and_tokenizer=tiny_model())
    stage1 = load_file(tmp_path / "run" / "pretrain" / "hypernet" / "hypernet.safetensors")
    final = method.hypernet.state_dict()
    shared_b = [k for k in final if k.startswith("shared_b")]
    assert shared_b and all(torch.count_nonzero(stage1[k]) == 0 for k in shared_b)  # frozen at ΔW = 0 in stage 1
    assert any(torch.count_nonzero(final[k]) for k in shared_b)  # learned in stage 2
    lora = method.adapter("Repeat the input.")
    name = next(iter(lora.factors))
    a, b = lora.factors[name]
    assert a.shape[1] == b.shape[2] == 2 * cfg.rank
    slot = method.hypernet.module_names.index(name)
    shared = method.hypernet.scale * method.hypernet.shared_b[slot] @ method.hypernet.shared_a[slot]
    generated = method.hypernet.scale * b[0, :, cfg.rank :] @ a[0, cfg.rank :]
    torch.testing.assert_close(lora.delta(name), shared + generated)  # ΔW = s·(B0 A0 + B(z) A(z))
    out = export_adapter(method, "Repeat the input.", tmp_path / "adapter")
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 2 * cfg.rank
    peft_model = PeftModel.from_pretrained(tiny_model()[0], out)
    ids = method.tokenizer(["the answer is 12"], return_tensors="pt")
    with torch.no_grad(), conditioned(method.model, lora=lora):
        ours = method.model(**ids).logits
    torch.testing.assert_close(ours, peft_model(**ids).logits, rtol=1e-5, atol=1e-5)
    loaded = load_tagi(tmp_path / "run", model_and_tokenizer=tiny_model())
    assert all(torch.equal(v, loaded.hypernet.state_dict()[k]) for k, v in final.items())


def test_stage_one_is_reused_through_pretrain_path(jsonl_data, tmp_path, monkeypatch):
    first = tmp_path / "first"
    train_tagi(tiny_cfg(jsonl_data), first, model_and_tokenizer=tiny_model())
    stage1 = first / "pretrain" / "hypernet"
    reuse = tiny_cfg(
        jsonl_data,
        fusion=False,
        teachers=TeacherConfig(rank=2, path=str(first / "teachers")),
        pretrain=PretrainConfig(a_tokens=8, b_tokens=4, c_tokens=4, train=tc(3), path=str(stage1)),
    )
    # stage 2 of the reusing run starts from the first run's stage-1 weights
    started = {}
    import hyperadapt.methods.tagi.train as tagi_train

    real = tagi_train.load_hypernet_weights

    def spy(net, path):
        started["from"] = path
        return real(net, path)

    monkeypatch.setattr(tagi_train, "load_hypernet_weights", spy)
    train_tagi(reuse, tmp_path / "second", model_and_tokenizer=tiny_model())
    assert started["from"] == stage1 and not (tmp_path / "second" / "pretrain").exists()
    missing = tiny_cfg(jsonl_data, pretrain=PretrainConfig(a_tokens=8, b_tokens=4, c_tokens=4, path=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="holds no stage-1 hypernetwork"):
        train_tagi(missing, tmp_path / "third", model_and_tokenizer=tiny_model())


def test_teachers_with_a_shared_part_start_the_students_shared_adapter(jsonl_data, tmp_path, monkeypatch):
    from hyperadapt.core.inject import target_linears
    from hyperadapt.methods.tagi.hypernet import TagiHypernetwork
    from hyperadapt.methods.tagi.teachers import Teachers

    # teachers' alpha differs from the student's: the copy folds the scale ratio into B (the same ΔW)
    cfg = tiny_cfg(
        jsonl_data,
        shared_adapter=True,
        teachers=TeacherConfig(rank=2, alpha=4.0, shared=True, train=tc(3)),
        losses=LossConfig(kl_weight=0, align_weight=0),
    )  # no KL, no alignment: teachers still needed
    assert cfg.needs_teachers and not cfg.losses.needs_teachers
    started = {}
    real = TagiHypernetwork.set_shared

    def spy(net, lora):
        real(net, lora)
        started["student"] = {n: net.scale * net.shared_b[i] @ net.shared_a[i] for i, n in enumerate(net.module_names)}

    monkeypatch.setattr(TagiHypernetwork, "set_shared", spy)
    train_tagi(cfg, tmp_path / "run", model_and_tokenizer=tiny_model())
    teachers = Teachers.load(tmp_path / "run" / "teachers")
    assert teachers.shared is not None and (tmp_path / "run" / "teachers" / "shared").is_dir()
    common = teachers.shared.adapter(0)
    assert any(torch.count_nonzero(common.delta(n)) for n in common.factors)  # the shared part trained
    for name in common.factors:  # stage 2 started from the teachers' shared ΔW
        torch.testing.assert_close(started["student"][name], common.delta(name))
    for index in ([0, 0, 0], [0, 1, 0]):  # one teacher for the batch (fast path) or one per example
        both = teachers.conditioning(index)
        for name in common.factors:
            a, b = both.factors[name]
            assert a.shape[1] == b.shape[2] == 2 * cfg.teachers.rank
            for j, t in enumerate(index):
                own = teachers.bank.adapter(t)
                torch.testing.assert_close(both.example(j).delta(name), common.delta(name) + own.delta(name))
    with pytest.raises(ValueError, match="teachers.rank"):
        tiny_cfg(jsonl_data, shared_adapter=True, teachers=TeacherConfig(rank=4, shared=True))
    linears = target_linears(tiny_model()[0], cfg.target_modules)
    shapes = {n: (m.in_features, m.out_features) for n, m in linears.items()}
    with pytest.raises(ValueError, match="no shared adapter"):
        TagiHypernetwork(shapes, input_dim=5, rank=2, alpha=4.0, hidden=8, blocks=1).set_shared(common)
    with pytest.raises(ValueError, match="adapter rank 2, the shared adapter's is 4"):
        TagiHypernetwork(shapes, input_dim=5, rank=4, alpha=4.0, hidden=8, blocks=1, shared=True).set_shared(common)


@pytest.mark.parametrize("leftover", ["empty", "partial"])
def test_stage_two_killed_in_its_first_checkpoint_write_still_starts_from_stage_one(jsonl_data, tmp_path, leftover):
    # a kill while stage 2 writes its first checkpoint leaves checkpoints/ without a complete checkpoint: the
    # resumed stage must start as a fresh one does, from stage 1 and the teachers' shared adapter
    cfg = tiny_cfg(jsonl_data, shared_adapter=True, teachers=TeacherConfig(rank=2, shared=True, train=tc(3)))
    clean = train_tagi(cfg, tmp_path / "clean", model_and_tokenizer=tiny_model())
    run = tmp_path / "killed"
    train_tagi(cfg, run, model_and_tokenizer=tiny_model())
    for done in (run / "finetune", run / "hypernet"):  # back to the moment stage 2 began
        shutil.rmtree(done)
    status = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**status, "status": "running"}))
    checkpoints = run / "finetune" / "checkpoints"
    checkpoints.mkdir(parents=True)
    if leftover == "partial":  # the temporary folder of the first checkpoint, cut before its state.json
        (checkpoints / ".tmp-step-0000002").mkdir()
        shutil.copy(
            run / "pretrain" / "hypernet" / "hypernet.safetensors",
            checkpoints / ".tmp-step-0000002" / "params.safetensors",
        )
    resumed = train_tagi(cfg, run, model_and_tokenizer=tiny_model())
    for (n, p), q in zip(clean.hypernet.state_dict().items(), resumed.hypernet.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=n)
