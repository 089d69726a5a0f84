"""The training loop: schedule, deterministic batches, atomic checkpoints, exact resume."""

import json
import os
import shutil
import stat

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from tests.cli_helpers import runner

from hyperadapt.io import write_dir_atomic
from hyperadapt.testing import tiny_model
from hyperadapt.training import (
    StepSampler,
    TrainConfig,
    Trainer,
    latest_checkpoint,
    lr_at,
    pad_batch,
    training_seconds,
)


def test_schedule_warmup_then_cosine():
    cfg = TrainConfig(steps=10, lr=1.0, warmup_ratio=0.2)
    assert lr_at(cfg, 0) == pytest.approx(0.5) and lr_at(cfg, 1) == pytest.approx(1.0)
    assert lr_at(cfg, 2) == pytest.approx(1.0) and lr_at(cfg, 10) == pytest.approx(0.0)
    assert all(lr_at(cfg, s) >= lr_at(cfg, s + 1) for s in range(2, 10))


def test_sampler_covers_each_epoch_and_is_deterministic():
    a, b = StepSampler(10, 4, seed=3), StepSampler(10, 4, seed=3)
    first = a.indices(0) + a.indices(1) + a.indices(2)[:2]
    assert sorted(first) == list(range(10))
    assert [b.indices(k) for k in (2, 0, 5)] == [a.indices(k) for k in (2, 0, 5)]
    with pytest.raises(ValueError, match="no training examples"):
        StepSampler(0, 4, 0)


def test_pad_batch_masks_padding():
    batch = pad_batch([([1, 2, 3], [-100, 2, 3]), ([4], [4])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def _setup(run_dir, steps=6, save_every=2):
    model, _ = tiny_model("llama", seed=0)
    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(model, lora)
    peft_model.train()
    params = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    data = torch.randint(3, 300, (12, 10), generator=torch.Generator().manual_seed(1))

    def make_batch(idx):
        x = data[idx]
        return {"input_ids": x, "labels": x, "attention_mask": torch.ones_like(x)}

    def loss_fn(batch, step):
        return peft_model(**batch).loss

    cfg = TrainConfig(steps=steps, batch_size=2, grad_accum=2, lr=1e-2, save_every=save_every, seed=5)
    return Trainer(params, loss_fn, make_batch, len(data), cfg, run_dir), params


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    straight, p1 = _setup(tmp_path / "a")
    straight.train()
    interrupted, _ = _setup(tmp_path / "b")
    assert interrupted.train(stop_at=3) == 3  # "crash" after step 3 (checkpoint written at stop)
    resumed, p2 = _setup(tmp_path / "b")
    assert resumed.train(resume=True) == 6
    for name in p1:
        assert torch.equal(p1[name], p2[name]), name


def test_training_seconds_carry_over_a_resume(tmp_path):
    fresh, _ = _setup(tmp_path / "b")
    fresh.train(stop_at=3)
    assert fresh.clock.before == 0.0 and fresh.clock.seconds > 0.0
    saved = json.loads((latest_checkpoint(tmp_path / "b") / "state.json").read_text())["seconds"]
    assert saved == pytest.approx(fresh.clock.seconds)
    resumed, _ = _setup(tmp_path / "b")
    resumed.train(resume=True)
    # the seconds of steps 1..3 come from the checkpoint; steps 4..6 add this process's own
    assert resumed.clock.before == pytest.approx(saved)
    assert resumed.clock.seconds > resumed.clock.before


def test_training_seconds_sum_every_stage_and_every_session(tmp_path):
    """A run of two stages (teachers, stage 2), the second resumed in a later process: what it cost in all is the
    sum of each stage's last checkpoint clock, not what the last process timed."""
    assert training_seconds(tmp_path / "run") is None  # nothing trained yet
    teachers, _ = _setup(tmp_path / "run" / "teachers")
    teachers.train()
    stage2, _ = _setup(tmp_path / "run" / "finetune")
    stage2.train(stop_at=3)
    resumed, _ = _setup(tmp_path / "run" / "finetune")
    resumed.train(resume=True)
    assert training_seconds(tmp_path / "run") == pytest.approx(teachers.clock.seconds + resumed.clock.seconds)
    assert training_seconds(tmp_path / "run" / "teachers") == pytest.approx(teachers.clock.seconds)
    assert resumed.clock.before > 0.0  # the last process timed only steps 4..6
    # a checkpoint from before the seconds were recorded: no total rather than one too small
    state = latest_checkpoint(tmp_path / "run" / "teachers") / "state.json"
    state.write_text(json.dumps({k: v for k, v in json.loads(state.read_text()).items() if k != "seconds"}))
    assert training_seconds(tmp_path / "run") is None


def test_resume_from_periodic_checkpoint(tmp_path):
    straight, p1 = _setup(tmp_path / "a")
    straight.train()
    first, _ = _setup(tmp_path / "b", save_every=4)
    first.train(stop_at=5)
    # Pretend the run died at step 5 before its last save: fall back to the step-4 checkpoint.
    ckpts = tmp_path / "b" / "checkpoints"
    (ckpts / "latest").write_text("step-0000004")
    resumed, p2 = _setup(tmp_path / "b", save_every=4)
    resumed.train()
    assert all(torch.equal(p1[n], p2[n]) for n in p1)


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    trainer, _ = _setup(tmp_path / "r", steps=6, save_every=1)
    trainer.train()
    names = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    assert names == ["latest", "step-0000005", "step-0000006"]
    assert latest_checkpoint(tmp_path / "r").name == "step-0000006"
    assert (tmp_path / "r" / "train_log.jsonl").exists()


@pytest.mark.parametrize(
    "pointer", ["../../step-0000009", "/abs/step-0000009", "step-0000001/../../../step-0000009", ".."]
)
def test_the_latest_pointer_never_leads_out_of_the_run(tmp_path, pointer):
    """A damaged ``latest`` is read as a crash leaves it: the newest complete step folder of the run."""
    trainer, _ = _setup(tmp_path / "r", steps=2, save_every=1)
    trainer.train()
    shutil.copytree(tmp_path / "r" / "checkpoints" / "step-0000002", tmp_path / "step-0000009")  # another run's
    (tmp_path / "r" / "checkpoints" / "latest").write_text(pointer.replace("/abs", str(tmp_path)))
    assert latest_checkpoint(tmp_path / "r") == tmp_path / "r" / "checkpoints" / "step-0000002"


def test_written_folders_follow_the_umask(tmp_path):
    """mkdtemp makes 0700 and safetensors writes 0600: a run shared by a group must stay readable."""
    old = os.umask(0o022)
    try:

        def write(tmp):
            save_file({"w": torch.zeros(2)}, tmp / "w.safetensors")
            (tmp / "sub").mkdir()
            (tmp / "sub" / "run.json").write_text("{}")

        out = write_dir_atomic(tmp_path / "ckpt", write)
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in (out, *out.rglob("*"))}
    assert modes == {"ckpt": 0o755, "ckpt/w.safetensors": 0o644, "ckpt/sub": 0o755, "ckpt/sub/run.json": 0o644}


def test_mismatched_checkpoint_is_an_error(tmp_path):
    trainer, _ = _setup(tmp_path / "r", steps=2)
    trainer.train()
    trainer.params = {"other": torch.nn.Parameter(torch.zeros(1))}
    with pytest.raises(ValueError, match="does not match the model"):
        trainer.load(latest_checkpoint(tmp_path / "r"))


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda state: state.clear(), ["state.json is damaged"]),
        (lambda state: state.update(step="two"), ["state.json is damaged"]),
        (lambda state: state.update(seconds="1.5"), ["state.json is damaged"]),
        (lambda state: state.update(optimizer={"x": 1}), ["state.json is damaged"]),
        (lambda state: state["optimizer"].update(param_groups=[]), ["optimizer state does not fit"]),
    ],
)
def test_a_damaged_checkpoint_state_is_a_user_error_naming_the_file(tmp_path, change, words):
    from hyperadapt.errors import UserError

    trainer, _ = _setup(tmp_path / "r", steps=2)
    trainer.train()
    checkpoint = latest_checkpoint(tmp_path / "r")
    state = json.loads((checkpoint / "state.json").read_text())
    change(state)
    (checkpoint / "state.json").write_text(json.dumps(state))
    with pytest.raises(UserError) as err:
        trainer.load(checkpoint)
    assert all(word in str(err.value) for word in [str(checkpoint), *words]), str(err.value)


def test_answer_loss_equals_the_models_own_loss_and_its_gradient():
    """The LM head on answer positions only gives HF's causal-LM loss (padding, prompt tokens, a row
    without answer tokens), and the same gradient, on a plain model, a conditioned one and a PEFT one."""
    from hyperadapt.core import AdapterBank, conditioned, inject
    from hyperadapt.training import answer_loss

    batch = pad_batch(
        [([5, 6, 7, 8, 9], [-100, -100, 7, 8, 9]), ([5, 6, 7], [-100, 6, 7]), ([4, 5, 6, 7], [-100, -100, -100, -100])],
        pad_id=0,
    )
    model, _ = tiny_model()
    torch.testing.assert_close(answer_loss(model, batch), model(**batch).loss, rtol=1e-5, atol=1e-6)

    inject(model, ("q_proj", "v_proj"), gating=False)
    bank = AdapterBank.for_model(model, 1, rank=2)
    with torch.no_grad():
        for b in bank.lora_B:
            b.normal_()
    grads = []
    for loss_of in (lambda: answer_loss(model, batch), lambda: model(**batch).loss):
        with conditioned(model, lora=bank.conditioning([0, 0, 0])):
            loss_of().backward()
        grads.append([p.grad.clone() for p in bank.parameters()])
        bank.zero_grad()
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)

    peft_model = get_peft_model(tiny_model()[0], LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    torch.testing.assert_close(answer_loss(peft_model, batch), peft_model(**batch).loss, rtol=1e-5, atol=1e-6)


def _bank_trainer(run_dir, batch_size, grad_accum, lr=1e-2, steps=1, save_every=0, seed=0):
    """A LoRA bank on the tiny model trained on 16 examples whose answers have 1 to 16 tokens."""
    from hyperadapt.core import AdapterBank, conditioned, inject
    from hyperadapt.training import answer_loss

    model, _ = tiny_model(seed=seed)
    inject(model, ("q_proj", "v_proj"), gating=False)
    torch.manual_seed(seed)
    bank = AdapterBank.for_model(model, 1, rank=2)
    with torch.no_grad():
        for b in bank.lora_B:
            b.normal_(std=0.1)
    gen = torch.Generator().manual_seed(3)
    examples = []
    for i in range(16):
        ids = torch.randint(3, 300, (18,), generator=gen).tolist()
        answer = 1 + i  # answers of very different lengths: the case token weighting matters for
        examples.append((ids, [-100] * (18 - answer) + ids[18 - answer :]))

    def loss_fn(batch, step):
        with conditioned(model, lora=bank.conditioning([0] * len(batch["input_ids"]))):
            return answer_loss(model, batch)

    cfg = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        max_grad_norm=0.0,
        warmup_ratio=0.0,
        save_every=save_every,
    )
    params = dict(bank.named_parameters())
    return Trainer(params, loss_fn, lambda idx: pad_batch([examples[i] for i in idx], 0), 16, cfg, run_dir)


def _first_gradient(trainer):
    """The gradient the optimiser receives at the first step."""
    seen = {}
    trainer.optimizer.step = lambda: seen.update({k: p.grad.clone() for k, p in trainer.params.items()})
    trainer.train(resume=False)
    return seen


def test_gradient_accumulation_gives_the_gradient_of_the_larger_batch(tmp_path, record_property):
    """8 × 2 micro-batches weigh each answer token as 16 × 1 does (a mean of micro-batch means would not)."""
    whole = _first_gradient(_bank_trainer(tmp_path / "a", batch_size=16, grad_accum=1))
    for size, accum in ((8, 2), (4, 4)):
        split = _first_gradient(_bank_trainer(tmp_path / f"{size}", batch_size=size, grad_accum=accum))
        for name in whole:
            torch.testing.assert_close(split[name], whole[name], rtol=1e-5, atol=1e-7)
        # the largest difference relative to its tensor's largest gradient (--junitxml keeps it: docs/results)
        gap = max(float((split[n] - whole[n]).abs().max() / whole[n].abs().max()) for n in whole)
        record_property(f"max_gradient_difference_relative_to_the_largest_{size}x{accum}", gap)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path):
    from hyperadapt.training import NonFiniteLossError

    trainer = _bank_trainer(tmp_path / "r", batch_size=4, grad_accum=1, lr=1e30, steps=6, save_every=1)
    with pytest.raises(NonFiniteLossError, match=r"the loss is nan .* at step 2 with train.lr=1e\+30") as err:
        trainer.train()
    assert "step-0000001" in str(err.value) and "Lower train.lr" in str(err.value)
    assert trainer.step == 1 and latest_checkpoint(tmp_path / "r").name == "step-0000001"
    saved = json.loads((latest_checkpoint(tmp_path / "r") / "state.json").read_text())
    assert saved["step"] == 1


def test_a_diverging_run_exits_with_one_error_and_stays_unfinished(tiny_dir, jsonl_data, tmp_path):

    from hyperadapt.cli import app

    overrides = [
        f"model={tiny_dir}",
        f"data=jsonl:{jsonl_data}",
        "rank=2",
        "train.steps=4",
        "train.batch_size=2",
        "train.max_length=64",
        "train.lr=1e30",
        "train.save_every=1",
    ]
    result = runner.invoke(
        app, ["train", "multitask-lora", "--out", str(tmp_path / "r"), *(a for o in overrides for a in ("--set", o))]
    )
    assert result.exit_code == 2 and "error: multitask-lora: the loss is nan" in result.output, result.output
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "running"
    assert not (tmp_path / "r" / "adapter").exists() and latest_checkpoint(tmp_path / "r").name == "step-0000001"
