"""TAGI's losses: CE on the answer, KL to the teacher's logits, and alignment of the generated ΔW.

Loss = CE + λ1·T²·KL + λ2·L_param (TAGI, Liao et al. NeurIPS 2024), without the public code's defects:
the KL compares the student with a *teacher* (never with itself), and the alignment compares the
products ΔW = s·B·A with each side's own scaling (LoRA factors are not identifiable), for any ranks.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from hyperadapt.core.lora import LoraConditioning


def distill_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """T²·KL(p_teacher ‖ p_student) at temperature T, averaged over answer tokens (Hinton et al. 2015).

    ``student`` and ``teacher`` are ``[n, V]`` logits of the same answer tokens; the teacher's side is
    treated as a constant. (The paper writes this KL(student ‖ teacher): the usual distillation KL.)
    """
    if student.shape != teacher.shape:
        shapes = f"{tuple(student.shape)} vs {tuple(teacher.shape)}"
        raise ValueError(f"student and teacher logits differ in shape: {shapes}")
    if student.shape[0] == 0:
        return student.sum() * 0.0
    log_p_s = F.log_softmax(student.float() / temperature, dim=-1)  # [n, V]
    log_p_t = F.log_softmax(teacher.detach().float() / temperature, dim=-1)  # [n, V]
    kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="sum") / student.shape[0]
    return kl * temperature**2


def _per_example(factors: tuple[Tensor, Tensor], n: int) -> tuple[Tensor, Tensor]:
    a, b = factors
    return a.expand(n, -1, -1).float(), b.expand(n, -1, -1).float()  # [n, r, in], [n, out, r]


def _scales(lora: LoraConditioning, n: int, device: torch.device) -> Tensor:
    scale = lora.scale
    if isinstance(scale, Tensor) and scale.dim() > 0:
        return scale.to(device, torch.float32)  # [n]
    return torch.full((n,), float(scale), device=device)  # [n]


def delta_sq_distance(
    student: tuple[Tensor, Tensor], teacher: tuple[Tensor, Tensor], s_scale: Tensor, t_scale: Tensor
) -> Tensor:
    """‖s_s·B_s A_s − s_t·B_t A_t‖²_F per example, through r×r Gram matrices (no [out, in] matrix is formed).

    ‖s·BA‖² = s²·tr((BᵀB)(AAᵀ)); ⟨s·B_sA_s, t·B_tA_t⟩ = s·t·tr((B_sᵀB_t)(A_tA_sᵀ)), which works for
    different ranks r_s and r_t. Factors are ``A [N, r, in]``, ``B [N, out, r]``; scales ``[N]``.
    """
    n = max(student[0].shape[0], student[1].shape[0], teacher[0].shape[0], teacher[1].shape[0])
    a_s, b_s = _per_example(student, n)  # [N, r_s, in], [N, out, r_s]
    a_t, b_t = _per_example(teacher, n)  # [N, r_t, in], [N, out, r_t]
    ss = (b_s.transpose(1, 2) @ b_s * (a_s @ a_s.transpose(1, 2))).sum((1, 2))  # [N]
    tt = (b_t.transpose(1, 2) @ b_t * (a_t @ a_t.transpose(1, 2))).sum((1, 2))  # [N]
    st = (b_s.transpose(1, 2) @ b_t * (a_s @ a_t.transpose(1, 2))).sum((1, 2))  # [N]: Σ (B_sᵀB_t) ⊙ (A_sA_tᵀ)
    dist = s_scale**2 * ss + t_scale**2 * tt - 2 * s_scale * t_scale * st  # [N]
    return dist.clamp_min(0.0)


def alignment_per_example(student: LoraConditioning, teacher: LoraConditioning, batch_size: int) -> Tensor:
    """‖ΔW_student − ΔW_teacher‖² of each example, each side with its own scale, averaged over the shared
    modules: ``[batch_size]``. Raises ``ValueError`` when the two share no module."""
    common = [name for name in student.factors if name in teacher.factors]
    if not common:
        raise ValueError("the student and teacher adapters share no module: align them on the same targets")
    device = next(iter(student.factors.values()))[0].device
    s_scale, t_scale = _scales(student, batch_size, device), _scales(teacher, batch_size, device)
    total = cast(  # common is not empty: never the 0 of an empty sum
        Tensor,
        sum(delta_sq_distance(student.factors[n], _to(teacher.factors[n], device), s_scale, t_scale) for n in common),
    )  # [B]
    return total / len(common)


def alignment_loss(student: LoraConditioning, teacher: LoraConditioning, batch_size: int) -> Tensor:
    """Mean over examples and shared modules of ‖ΔW_student − ΔW_teacher‖², each side with its own scale."""
    return alignment_per_example(student, teacher, batch_size).mean()


def _to(pair: tuple[Tensor, Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    return pair[0].detach().to(device), pair[1].detach().to(device)


def align_weight(weight: float | str, loss: Tensor) -> Tensor | float:
    """λ2: a number, or ``"sigmoid"``: sigmoid(L_param) as a constant weight (no gradient through λ2)."""
    if weight == "sigmoid":
        return torch.sigmoid(loss.detach())
    return float(weight)
