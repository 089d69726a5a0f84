"""The training loop: schedule, deterministic batches, atomic checkpoints, exact resume."""

import json
import os
import stat

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

from hyperadapt.io import write_dir_atomic
from hyperadapt.testing import tiny_model
from hyperadapt.training import StepSampler, TrainConfig, Trainer, latest_checkpoint, lr_at, pad_batch


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
    assert fresh.resumed_seconds == 0.0 and fresh.seconds > 0.0
    saved = json.loads((latest_checkpoint(tmp_path / "b") / "state.json").read_text())["seconds"]
    assert saved == pytest.approx(fresh.seconds)
    resumed, _ = _setup(tmp_path / "b")
    resumed.train(resume=True)
    # the seconds of steps 1..3 come from the checkpoint; steps 4..6 add this process's own
    assert resumed.resumed_seconds == pytest.approx(saved)
    assert resumed.seconds > resumed.resumed_seconds


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


def test_answer_loss_equals_the_models_own_loss_and_its_gradient():
    """The LM head on answer positions only gives HF's causal-LM loss (padding, prompt tokens, a row
    without answer tokens), and the same gradient, on a plain model, a conditioned one and a PEFT one."""
    from hyperadapt.core import AdapterBank, conditioned, inject
    from hyperadapt.training import answer_loss

    batch = pad_batch([([5, 6, 7, 8, 9], [-100, -100, 7, 8, 9]), ([5, 6, 7], [-100, 6, 7]),
                       ([4, 5, 6, 7], [-100, -100, -100, -100])], pad_id=0)
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
