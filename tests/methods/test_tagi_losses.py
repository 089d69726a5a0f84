"""TAGI's losses: Gram-matrix alignment equals the dense ‖ΔW_s − ΔW_t‖², the KL against teachers."""

from __future__ import annotations

import pytest
import torch

from hyperadapt.core import AdapterBank, LoraConditioning, conditioned, inject
from hyperadapt.methods.tagi.losses import (
    align_weight,
    alignment_loss,
    delta_sq_distance,
    distill_kl,
)
from hyperadapt.methods.tagi.teachers import Teachers, teacher_logits
from hyperadapt.testing import tiny_model
from hyperadapt.training import answer_logits, answer_targets


def dense(a_s, b_s, a_t, b_t, s, t):
    return ((s[:, None, None] * b_s @ a_s) - (t[:, None, None] * b_t @ a_t)).square().sum((1, 2))  # [N]


@pytest.mark.parametrize(("r_s", "r_t"), [(3, 3), (2, 5), (6, 1)])
def test_gram_alignment_equals_dense(r_s, r_t):
    g = torch.Generator().manual_seed(r_s * 10 + r_t)
    n, d_in, d_out = 4, 7, 5
    a_s, b_s = torch.randn(n, r_s, d_in, generator=g), torch.randn(n, d_out, r_s, generator=g)
    a_t, b_t = torch.randn(n, r_t, d_in, generator=g), torch.randn(n, d_out, r_t, generator=g)
    s, t = torch.tensor([0.5, 1.0, 2.0, 3.0]), torch.tensor([2.0, 0.25, 1.0, 0.0])
    got = delta_sq_distance((a_s, b_s), (a_t, b_t), s, t)
    torch.testing.assert_close(got, dense(a_s, b_s, a_t, b_t, s, t), rtol=1e-5, atol=1e-5)


def test_alignment_loss_broadcasts_shared_factors_and_scales():
    g = torch.Generator().manual_seed(0)
    a_s, b_s = torch.randn(3, 2, 6, generator=g), torch.randn(3, 4, 2, generator=g)
    a_t, b_t = torch.randn(1, 4, 6, generator=g), torch.randn(1, 4, 4, generator=g)
    student = LoraConditioning({"m": (a_s, b_s)}, 2.0)
    teacher = LoraConditioning({"m": (a_t, b_t), "other": (a_t, b_t)}, 0.5, batch_size=3)
    want = dense(
        a_s, b_s, a_t.expand(3, -1, -1), b_t.expand(3, -1, -1), torch.full((3,), 2.0), torch.full((3,), 0.5)
    ).mean()
    torch.testing.assert_close(alignment_loss(student, teacher, 3), want, rtol=1e-5, atol=1e-5)
    assert float(alignment_loss(teacher, teacher, 3)) == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="share no module"):
        alignment_loss(student, LoraConditioning({"x": (a_t, b_t)}), 3)


def test_align_weight_sigmoid_is_a_constant():
    loss = torch.tensor(0.7, requires_grad=True)
    w = align_weight("sigmoid", loss)
    assert not w.requires_grad and float(w) == pytest.approx(torch.sigmoid(torch.tensor(0.7)).item())
    assert align_weight(0.3, loss) == 0.3


def test_kl_zero_for_the_same_logits_and_positive_otherwise():
    logits = torch.randn(6, 11)
    assert float(distill_kl(logits, logits.clone(), 3.0)) == pytest.approx(0.0, abs=1e-6)
    other = logits + torch.randn(6, 11)
    kl = distill_kl(logits, other, 3.0)
    p_t = torch.softmax(other / 3, -1)
    want = (p_t * (p_t.log() - torch.log_softmax(logits / 3, -1))).sum(-1).mean() * 9
    assert float(kl) > 0
    torch.testing.assert_close(kl, want)
    with pytest.raises(ValueError, match="differ in shape"):
        distill_kl(logits, other[:3], 3.0)


def test_answer_logits_match_the_full_model():
    model, tok = tiny_model()
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    labels = torch.tensor([[-100, -100, 7, 8, 9], [-100, 6, 7, -100, -100]])
    full = model(input_ids=ids, attention_mask=mask).logits
    got = answer_logits(model, ids, mask, labels)
    torch.testing.assert_close(got, torch.cat([full[0, 1:4], full[1, 0:2]]), rtol=1e-5, atol=1e-5)
    assert answer_targets(labels).tolist() == [7, 8, 9, 6, 7]


def test_teacher_logits_come_from_each_examples_teacher():
    model, _ = tiny_model()
    inject(model, ("q_proj", "v_proj"), gating=False)
    bank = AdapterBank.for_model(model, 2, rank=2)
    with torch.no_grad():
        bank.lora_B[0][1].normal_()  # teacher 1 differs from the base model, teacher 0 does not
    teachers = Teachers(bank, ["a", "b"], "task")
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 8]])
    batch = {
        "teacher_input_ids": ids,
        "teacher_attention_mask": torch.ones_like(ids),
        "teacher_labels": torch.tensor([[-100, -100, 7, 8]] * 2),
        "teacher": torch.tensor([0, 1]),
    }
    got = teacher_logits(model, teachers, batch)  # [4, V]: 2 answer tokens per example
    base = answer_logits(model, ids, torch.ones_like(ids), batch["teacher_labels"])
    torch.testing.assert_close(got[:2], base[:2])
    assert not torch.allclose(got[2:], base[2:])
    with conditioned(model, lora=bank.conditioning([1, 1])):
        with_teacher = answer_logits(model, ids, torch.ones_like(ids), batch["teacher_labels"])
    torch.testing.assert_close(got[2:], with_teacher[2:])
