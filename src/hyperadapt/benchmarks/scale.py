"""How the cost of each method grows with the model: Llama-shaped models of 135M, 360M and 1B parameters.

    hyperadapt bench scale --sizes 135m 360m 1b --depths 1 2 --out results/bench_scale.json

Random weights (cost does not depend on them), built from the published configs written below (no
download). For each size a training step on a batch of ``--batch`` × ``--seq`` tokens (the last
``--answer-tokens`` of each are the answer) of the multi-task LoRA (PEFT, its default config), TAGI stage 2
(hypernetwork → per-example LoRA, the teachers' logits, CE + KL + alignment: ``finetune_loss``) and MeGan
(per-token β), each with its default config: seconds, peak extra memory, trainable parameters; and
greedy generation tokens/s of the plain model, with TAGI's generated adapters and with MeGan's β.

Every cost is linear in the number of decoder layers L: ``cost(L) = fixed + L · per_layer`` (the fixed part
is the embeddings, the LM head and the loss). A size is measured at ``--depths`` (default 1 and 2 layers of
its real width), the per-layer and fixed parts are solved from them, and the full depth's figure is
``fixed + L · per_layer``: so the 1B model costs three layers' time, not sixteen. ``--full-depth SIZE``
also measures a size at its real depth, to check the extrapolation against a measurement. Peak memory on
the CPU is the growth of the process's peak RSS during the step (``bench core``'s meter); on CUDA the
allocator's peak; and the bytes autograd saves for the backward pass (the activations: deterministic,
what the 8B/70B plan scales). Every case runs once to measure memory (a warm-up too), then ``--repeats``
times for its time: CPU seconds of this process on the CPU (one thread: robust to other processes' load),
wall seconds on CUDA.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict, cast

import torch
from peft import get_peft_model
from transformers import AutoModelForCausalLM, GenerationMixin, LlamaConfig, PreTrainedModel

from hyperadapt.benchmarks import Parser, command, machine
from hyperadapt.benchmarks.core import Meter
from hyperadapt.core import AdapterBank, conditioned, inject, peft_wrapping, remove, target_linears
from hyperadapt.errors import UserError
from hyperadapt.io import check_out_file, load_json, save_json
from hyperadapt.methods.baselines.multitask_lora import MultiTaskLoraConfig
from hyperadapt.methods.megan.config import MeganConfig
from hyperadapt.methods.megan.hypernet import embed_condition_ids
from hyperadapt.methods.megan.train import build_hypernetwork, megan_loss
from hyperadapt.methods.tagi.config import TagiConfig
from hyperadapt.methods.tagi.method import build_hypernet
from hyperadapt.methods.tagi.teachers import Teachers
from hyperadapt.methods.tagi.train import Student, finetune_loss
from hyperadapt.training import IGNORE, Loss, answer_loss


class Shape(TypedDict):
    """The ``LlamaConfig`` fields that give a model its size."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool


SHAPES: dict[str, Shape] = {  # Llama-family shapes from the models' published config.json files
    "135m": {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
    },  # SmolLM2-135M
    "360m": {
        "hidden_size": 960,
        "intermediate_size": 2560,
        "num_hidden_layers": 32,
        "num_attention_heads": 15,
        "num_key_value_heads": 5,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
    },  # SmolLM2-360M
    "1b": {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": True,
    },  # Llama-3.2-1B
    "8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
    },  # Llama-3-8B
    "70b": {
        "hidden_size": 8192,
        "intermediate_size": 28672,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "tie_word_embeddings": False,
    },  # Llama-3-70B
}
TEACHERS = 8  # teacher adapters in the bank (one per example of a batch of 8)


@dataclass
class ScaleConfig:
    sizes: list[str] = field(default_factory=lambda: ["135m", "360m", "1b"])
    depths: list[int] = field(default_factory=lambda: [1, 2])
    full_depth: list[str] = field(default_factory=list)
    batch: int = 8
    seq: int = 384
    answer_tokens: int = 32
    gen_prompt: int = 64
    gen_tokens: int = 16
    repeats: int = 1
    device: str | None = None
    threads: int = 1
    out: str = "results/bench_scale.json"
    plan: list[str] | None = None  # --plan RESULT.json [MORE.json ...]: add the plan to RESULT.json, no measuring

    def __post_init__(self) -> None:
        unknown = [s for s in [*self.sizes, *self.full_depth] if s not in SHAPES]
        if unknown:
            raise ValueError(f"unknown sizes {unknown}: choose from {list(SHAPES)}")
        if len(set(self.depths)) < 2 or min(self.depths) < 1:
            raise ValueError(
                f"--depths needs two different layer counts >= 1 to solve cost = fixed + L·per_layer, got {self.depths}"
            )
        if not 0 < self.answer_tokens < self.seq:
            raise ValueError(f"--answer-tokens must be in 1..{self.seq - 1}, got {self.answer_tokens}")
        if self.repeats < 1:
            raise ValueError(f"--repeats must be at least 1, got {self.repeats}")


def build_model(size: str, layers: int, device: torch.device) -> PreTrainedModel:
    """A frozen random-weight model of ``size``'s shape with ``layers`` decoder layers (fp32 on the CPU,
    bf16 on CUDA)."""
    shape: Shape = {**SHAPES[size], "num_hidden_layers": layers}
    config = LlamaConfig(
        **shape,
        head_dim=shape["hidden_size"] // shape["num_attention_heads"],
        max_position_embeddings=8192,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        hidden_act="silu",
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    model: PreTrainedModel = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]  # unannotated
        config, dtype=dtype
    ).to(device)
    model.requires_grad_(False)
    model.eval()  # type: ignore[no-untyped-call]  # transformers' override of Module.eval is unannotated
    return model


def lm_batch(cfg: ScaleConfig, vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, vocab, (cfg.batch, cfg.seq), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, : cfg.seq - cfg.answer_tokens] = IGNORE
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    return {k: v.to(device) for k, v in batch.items()}


def step_fn(loss_of: Callable[[], torch.Tensor | Loss], params: list[torch.nn.Parameter]) -> Callable[[], None]:
    """One optimiser step (forward, backward, AdamW) of ``params``."""
    optimizer = torch.optim.AdamW(params, lr=1e-6)

    def step() -> None:
        loss = Loss.of(loss_of())
        (loss.per_token + loss.per_example).backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def generate_fn(
    model: PreTrainedModel,
    cfg: ScaleConfig,
    vocab: int,
    device: torch.device,
    condition: Callable[[], AbstractContextManager[object]],
) -> Callable[[], None]:
    """Greedy generation of exactly ``gen_tokens`` tokens for a batch of ``gen_prompt``-token prompts, under
    ``condition()`` (a context manager factory, built anew per call as a server would)."""
    ids = torch.randint(3, vocab, (cfg.batch, cfg.gen_prompt), generator=torch.Generator().manual_seed(1)).to(device)

    @torch.no_grad()
    def generate() -> None:
        with condition():  # transformers 5 declares generate on GenerationMixin, which every causal LM mixes in
            cast(GenerationMixin, model).generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=cfg.gen_tokens,
                min_new_tokens=cfg.gen_tokens,
                do_sample=False,
                pad_token_id=0,
            )

    return generate


def measure(fn: Callable[[], None], repeats: int, meter: Meter, model: torch.nn.Module) -> dict[str, Any]:
    """One call that measures memory (and warms up), then ``repeats`` timed calls (their median).

    Memory: ``peak_mib``, the peak growth of the process's RSS (CPU) or of the CUDA allocator during the
    call; ``saved_mib``, the bytes of the tensors autograd keeps for the backward pass (each storage once,
    the model's own weights excluded): the activations, deterministic and independent of the allocator.
    Time: on the CPU the process's CPU seconds (with one thread, the wall time of an idle machine; other
    processes' load on a shared one does not inflate it; the wall time is kept as ``wall_s``), on CUDA the
    wall time."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights and storage.device.type != "meta":
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, peak = meter.measure(fn, True)
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        meter.measure(fn, False)
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    times = wall if meter.device.type == "cuda" else cpu
    return {
        "seconds": statistics.median(times),
        "times_s": times,
        "wall_s": wall,
        "peak_mib": peak / 2**20,
        "saved_mib": sum(saved.values()) / 2**20,
    }


def measure_depth(
    size: str, layers: int, cfg: ScaleConfig, device: torch.device, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every case of one model of ``size``'s width with ``layers`` decoder layers."""
    meter = Meter(device)
    out: dict[str, Any] = {}
    model = build_model(size, layers, device)
    vocab = model.config.vocab_size
    batch = lm_batch(cfg, vocab, device)
    out["base_parameters"] = sum(p.numel() for p in model.parameters())

    def run(name: str, fn: Callable[[], None], trainable: int | None = None) -> None:
        started = time.perf_counter()
        out[name] = measure(fn, cfg.repeats, meter, model)
        if trainable is not None:
            out[name]["trainable"] = trainable
        log(
            f"  {size} L={layers} {name}: {out[name]['seconds']:.2f} s, peak {out[name]['peak_mib']:.0f} MiB, "
            f"saved {out[name]['saved_mib']:.0f} MiB"
            f"({time.perf_counter() - started:.0f} s)"
        )

    run("generate_plain", generate_fn(model, cfg, vocab, device, torch.no_grad))

    lcfg = MultiTaskLoraConfig()
    with peft_wrapping():
        peft_model = get_peft_model(model, lcfg.lora_config())
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    run("train_lora", step_fn(lambda: answer_loss(peft_model, batch), params), sum(p.numel() for p in params))
    peft_model.unload()
    model.__dict__.pop("peft_config", None)
    model.requires_grad_(False)

    tcfg = TagiConfig()
    inject(model, tcfg.target_modules, gating=False)
    torch.manual_seed(0)
    hypernet = build_hypernet(tcfg, model, model.config.hidden_size)  # the base encoder's vector width
    bank = AdapterBank.for_model(model, TEACHERS, tcfg.teachers.rank, tcfg.target_modules, tcfg.teachers.alpha)
    bank.requires_grad_(False)
    teachers = Teachers(bank, [f"task{i}" for i in range(TEACHERS)], "task")
    student = Student(tcfg, model, hypernet)
    index = torch.arange(cfg.batch, device=device)
    tagi_batch = {
        **batch,
        **{f"teacher_{k}": v for k, v in batch.items()},
        "vectors": torch.randn(cfg.batch, model.config.hidden_size, device=device),
        "instruction_index": index,
        "teacher": index % TEACHERS,
    }
    hyper_params = list(hypernet.parameters())
    run(
        "train_tagi",
        step_fn(lambda: finetune_loss(student, teachers, tagi_batch)[0], hyper_params),
        sum(p.numel() for p in hyper_params),
    )
    vectors = tagi_batch["vectors"]
    run(
        "generate_tagi",
        generate_fn(model, cfg, vocab, device, lambda: conditioned(model, lora=hypernet(vectors, index))),
    )
    remove(model)

    mcfg = MeganConfig()
    inject(model, targets=(), gating=True)
    hyper = build_hypernetwork(mcfg, model)
    cond_ids = torch.randint(3, vocab, (cfg.batch, mcfg.condition_max_tokens), device=device)
    megan_batch = {**batch, "condition_ids": cond_ids, "condition_mask": torch.ones_like(cond_ids, dtype=torch.bool)}
    hyper.train()
    run(
        "train_megan",
        step_fn(lambda: megan_loss(model, hyper, megan_batch, mcfg.l1_weight), list(hyper.parameters())),
        hyper.num_parameters(),
    )
    hyper.eval()
    cond = embed_condition_ids(model, cond_ids, megan_batch["condition_mask"])
    run("generate_megan", generate_fn(model, cfg, vocab, device, lambda: conditioned(model, beta=hyper.beta_fn(cond))))
    remove(model)
    return out


CASES = ("train_lora", "train_tagi", "train_megan", "generate_plain", "generate_tagi", "generate_megan")


def solve(depths: dict[int, dict[str, Any]], layers: int) -> dict[str, Any]:
    """Per case: ``fixed`` and ``per_layer`` seconds, MiB and trainable parameters from the two smallest
    depths, and the full depth's ``fixed + layers · per_layer``."""
    (l1, a), (l2, b) = sorted(depths.items())[:2]
    out: dict[str, Any] = {}
    for case in CASES:
        row: dict[str, dict[str, float]] = {}
        for key in ("seconds", "peak_mib", "saved_mib", "trainable"):
            if key not in a[case]:
                continue
            per_layer = (b[case][key] - a[case][key]) / (l2 - l1)
            fixed = a[case][key] - l1 * per_layer
            row[key] = {"fixed": fixed, "per_layer": per_layer, "full": fixed + layers * per_layer}
        out[case] = row
    per_layer_params = (b["base_parameters"] - a["base_parameters"]) / (l2 - l1)
    out["base_parameters"] = a["base_parameters"] - l1 * per_layer_params + layers * per_layer_params
    return out


def summary(full: dict[str, Any], cfg: ScaleConfig) -> dict[str, Any]:
    """Ratios to the LoRA step and generation tokens/s at full depth."""
    lora = full["train_lora"]["seconds"]["full"]
    tokens = cfg.batch * cfg.gen_tokens
    return {
        "step_s": {m: full[f"train_{m}"]["seconds"]["full"] for m in ("lora", "tagi", "megan")},
        "step_vs_lora": {m: full[f"train_{m}"]["seconds"]["full"] / lora for m in ("lora", "tagi", "megan")},
        "peak_mib": {m: full[f"train_{m}"]["peak_mib"]["full"] for m in ("lora", "tagi", "megan")},
        "saved_mib": {m: full[f"train_{m}"]["saved_mib"]["full"] for m in ("lora", "tagi", "megan")},
        "trainable": {m: round(full[f"train_{m}"]["trainable"]["full"]) for m in ("lora", "tagi", "megan")},
        "generate_tokens_per_s": {
            m: tokens / full[f"generate_{m}"]["seconds"]["full"] for m in ("plain", "tagi", "megan")
        },
        "base_parameters": round(full["base_parameters"]),
    }


def run(cfg: ScaleConfig, log: Callable[[str], None] = print, argv: Sequence[str] | None = None) -> dict[str, Any]:
    check_out_file(cfg.out, "--out")
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    result: dict[str, Any] = {
        "command": command("scale", argv),
        "machine": machine(),
        "config": asdict(cfg),
        "device": str(device),
        "memory": Meter(device).method,
        "sizes": {},
    }
    for size in cfg.sizes:
        started = time.perf_counter()
        depths = {d: measure_depth(size, d, cfg, device, log) for d in cfg.depths}
        layers = SHAPES[size]["num_hidden_layers"]
        full = solve(depths, layers)
        entry: dict[str, Any] = {
            "layers": layers,
            "tokens": cfg.batch * cfg.seq,
            "answer_tokens": cfg.batch * cfg.answer_tokens,
            "batch": [cfg.batch, cfg.seq, cfg.answer_tokens],
            "depths": depths,
            "extrapolated": full,
            "summary": summary(full, cfg),
        }
        if size in cfg.full_depth:
            measured = measure_depth(size, layers, cfg, device, log)
            entry["measured_full_depth"] = measured
        entry["seconds"] = time.perf_counter() - started
        result["sizes"][size] = entry
        save_json(result, cfg.out)  # after every size: a run cut short keeps what it measured
        log(f"{size}: {json.dumps(entry['summary'])}")
    return result


GB = 1e9
PLAN_GPUS, PLAN_GPU_GB = 8, 80.0


def trainable_counts(size: str) -> dict[str, int]:
    """Exact trainable parameters of each method's default config on ``size``'s full shape (built on the
    meta device: no memory, no weights), and the frozen teachers' bank of TAGI's stage 2."""
    shape = SHAPES[size]
    config = LlamaConfig(**shape, head_dim=shape["hidden_size"] // shape["num_attention_heads"])
    with torch.device("meta"):
        model: PreTrainedModel = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]  # unannotated
        lcfg, tcfg = MultiTaskLoraConfig(), TagiConfig()
        lora = sum(lcfg.rank * (m.in_features + m.out_features) for m in _plain_linears(model, lcfg.target_modules))
        teacher = sum(
            tcfg.teachers.rank * (m.in_features + m.out_features) for m in _plain_linears(model, tcfg.target_modules)
        )
        inject(model, tcfg.target_modules, gating=True)
        tagi = sum(p.numel() for p in build_hypernet(tcfg, model, shape["hidden_size"]).parameters())
        megan = build_hypernetwork(MeganConfig(), model).num_parameters()
        base = sum(p.numel() for p in model.parameters())
    embed = shape["vocab_size"] * shape["hidden_size"] * (1 if shape["tie_word_embeddings"] else 2)
    return {
        "base": base,
        "embed_and_head": embed,
        "lora": lora,
        "tagi": tagi,
        "megan": megan,
        "teacher_adapter": teacher,
    }


def _plain_linears(model: PreTrainedModel, targets: Sequence[str]) -> list[torch.nn.Linear]:
    """The target linears of a model nothing has wrapped yet: ``target_linears`` types them as modules."""
    return [cast(torch.nn.Linear, m) for m in target_linears(model, targets).values()]


def activation_fit(result: dict[str, Any], method: str) -> tuple[float, float]:
    """Least-squares (a, b) with per-layer saved bytes per token = a·hidden + b·intermediate, over the
    measured sizes (fp32 on the CPU; each size divided by its own token count)."""
    rows: list[list[int]] = []
    targets: list[float] = []
    for size, entry in result["sizes"].items():
        shape = SHAPES[size]
        rows.append([shape["hidden_size"], shape["intermediate_size"]])
        targets.append(entry["extrapolated"][f"train_{method}"]["saved_mib"]["per_layer"] * 2**20 / entry["tokens"])
    solution = torch.linalg.lstsq(
        torch.tensor(rows, dtype=torch.float64), torch.tensor(targets, dtype=torch.float64)[:, None]
    ).solution
    return float(solution[0]), float(solution[1])


def plan(
    result: dict[str, Any],
    sizes: Sequence[str] = ("8b", "70b"),
    batch: int = 8,
    seq: int = 384,
    answer_tokens: int = 32,
) -> dict[str, Any]:
    """Memory per GPU of a training step of each method on ``sizes`` with ``batch`` × ``seq`` tokens per GPU
    (``answer_tokens`` of each the answer), for one process, DDP and FSDP on 8 × 80 GB, with and without
    activation checkpointing (GB = 1e9 bytes).

    Measured (CPU, fp32): the bytes autograd saves per layer per token of each method at the measured sizes,
    fitted as a·hidden + b·intermediate; the fixed saved bytes (LM head on the answer, loss, TAGI's teacher
    logits) per answer token of the largest measured size with Llama-3's vocabulary. Exact: parameter
    counts (meta-device models). Assumed: bf16 weights and activations on the GPU (half the fp32 bytes
    measured); fp32 trainable parameters with gradients and AdamW's two moments (16 B each); FSDP holding
    1/8 of the decoder layers plus two gathered layers (the running and the prefetched one), embeddings and
    head whole; with checkpointing, one bf16 hidden state per layer plus one layer's activations. Not
    counted: the backward pass's transient buffers and allocator slack.
    """
    tokens, answers = batch * seq, batch * answer_tokens
    llama_vocab = [s for s in result["sizes"] if SHAPES[s]["vocab_size"] == 128256]
    reference = (llama_vocab or list(result["sizes"]))[-1]
    ref = result["sizes"][reference]
    out: dict[str, Any] = {
        "tokens_per_gpu": tokens,
        "answer_tokens_per_gpu": answers,
        "gpus": PLAN_GPUS,
        "gpu_gb": PLAN_GPU_GB,
        "fixed_from": reference,
        "fit": {},
        "models": {},
    }
    for method in ("lora", "tagi", "megan"):
        out["fit"][method] = dict(
            zip(("bytes_per_hidden", "bytes_per_intermediate"), activation_fit(result, method), strict=True)
        )
    for size in sizes:
        shape, counts = SHAPES[size], trainable_counts(size)
        layers, hidden = shape["num_hidden_layers"], shape["hidden_size"]
        weights = counts["base"] * 2 / GB
        layer_weights = (counts["base"] - counts["embed_and_head"] - hidden) / layers * 2 / GB
        whole = counts["embed_and_head"] * 2 / GB
        rows: dict[str, dict[str, Any]] = {}
        for method in ("lora", "tagi", "megan"):
            fit = out["fit"][method]
            per_token = fit["bytes_per_hidden"] * hidden + fit["bytes_per_intermediate"] * shape["intermediate_size"]
            per_layer = per_token * tokens / 2 / GB  # bf16
            fixed_saved = ref["extrapolated"][f"train_{method}"]["saved_mib"]["fixed"] * 2**20
            fixed = fixed_saved / ref["answer_tokens"] * answers / GB  # fp32 logits, as measured
            trainable = counts[method] * 16 / GB
            if method == "tagi":
                trainable += TEACHERS * counts["teacher_adapter"] * 4 / GB  # the frozen teachers, fp32
            activations = {
                "all layers": per_layer * layers,
                "checkpointed": tokens * hidden * 2 * layers / GB + per_layer,
            }
            row: dict[str, Any] = {
                "weights_gb": weights,
                "trainable_gb": trainable,
                "activation_per_layer_gb": per_layer,
                "fixed_gb": fixed,
            }
            for mode, act in activations.items():
                one = weights + trainable + act + fixed
                fsdp = (weights - whole) / PLAN_GPUS + 2 * layer_weights + whole + trainable + act + fixed
                row[mode] = {
                    "activations_gb": act,
                    "one_process_gb": one,
                    "ddp_gb": one,
                    "fsdp_gb": fsdp,
                    "fits": {"one_process": one <= PLAN_GPU_GB, "fsdp": fsdp <= PLAN_GPU_GB},
                }
            rows[method] = row
        out["models"][size] = {"parameters": counts, "layers": layers, "methods": rows}
    return out


def plan_markdown(p: dict[str, Any]) -> str:
    lines = [
        f"{p['tokens_per_gpu']} tokens per GPU, {p['gpus']} × {p['gpu_gb']:.0f} GB (GB = 1e9 B); "
        "one process and DDP hold the same per GPU.",
        "",
        "| model | method | weights | trainable (+ Adam) | activations / layer | one process / DDP | "
        "FSDP | one process / DDP, ckpt | FSDP, ckpt |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, model in p["models"].items():
        for method, r in model["methods"].items():
            lines.append(
                f"| {size} | {method} | {r['weights_gb']:.1f} | {r['trainable_gb']:.2f} | "
                f"{r['activation_per_layer_gb']:.2f} | {r['all layers']['one_process_gb']:.0f} | "
                f"{r['all layers']['fsdp_gb']:.0f} | {r['checkpointed']['one_process_gb']:.0f} | "
                f"{r['checkpointed']['fsdp_gb']:.0f} |"
            )
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    threads = result["machine"]["threads"] if "machine" in result else result["threads"]  # results before machine()
    lines = [
        f"`{result['command']}` ({result['device']}, {threads} thread(s))",
        "",
        "| size | base params | batch × seq (answer) | step s: LoRA / TAGI / MeGan | × LoRA: TAGI / MeGan "
        "| peak MiB: LoRA / TAGI / MeGan | saved MiB: LoRA / TAGI / MeGan | trainable: LoRA / TAGI / MeGan "
        "| gen tok/s: plain / TAGI / MeGan |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    trio = ("lora", "tagi", "megan")
    for size, entry in result["sizes"].items():
        s = entry["summary"]
        steps = " / ".join(f"{s['step_s'][m]:.2f}" for m in trio)
        peaks = " / ".join(f"{s['peak_mib'][m]:.0f}" for m in trio)
        saved = " / ".join(f"{s['saved_mib'][m]:.0f}" for m in trio)
        b, t, a = entry["batch"]
        trainable = " / ".join(f"{s['trainable'][m] / 1e6:.2f} M" for m in trio)
        gen = " / ".join(f"{v:.1f}" for v in s["generate_tokens_per_s"].values())
        ratios = f"{s['step_vs_lora']['tagi']:.2f} / {s['step_vs_lora']['megan']:.2f}"
        lines.append(
            f"| {size} | {s['base_parameters'] / 1e6:.0f} M | {b} × {t} ({a}) | {steps} | {ratios} | {peaks} "
            f"| {saved} | {trainable} | {gen} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> ScaleConfig:
    p = Parser(prog="hyperadapt bench scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=["135m", "360m", "1b"], help=f"of {list(SHAPES)}")
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2], help="layer counts measured per size")
    p.add_argument("--full-depth", nargs="*", default=[], help="sizes also measured at their real depth")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=384)
    p.add_argument("--answer-tokens", type=int, default=32)
    p.add_argument("--gen-prompt", type=int, default=64, help="prompt tokens of the generation cases")
    p.add_argument("--gen-tokens", type=int, default=16, help="tokens generated per prompt")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per case after the memory run")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch's default)")
    p.add_argument("--out", default="results/bench_scale.json")
    p.add_argument(
        "--plan",
        nargs="+",
        metavar="RESULT.json",
        help="measure nothing: add the 8B/70B plan to RESULT.json (the sizes of further results of the same settings "
        "join it first) and print its tables; the other options are ignored",
    )
    return ScaleConfig(**vars(p.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_args(argv)
    if cfg.plan:  # --plan RESULT.json [MORE.json ...]: the 8B/70B plan, written into RESULT.json
        path = Path(cfg.plan[0])
        result = load_json(path, "bench scale result")
        for more in cfg.plan[1:]:  # sizes measured by other runs of the same settings join the first result
            other = load_json(more, "bench scale result")  # each size keeps its own batch (entry["batch"])
            if not isinstance(other.get("sizes"), dict) or not isinstance(result.get("sizes"), dict):
                raise UserError(f"{more if 'sizes' in result else path}: not a result of hyperadapt bench scale")
            result["sizes"].update(other["sizes"])
            result.setdefault("merged", []).append({"file": more, "command": other.get("command")})
        if not isinstance(result.get("sizes"), dict):
            raise UserError(f"{path}: not a result of hyperadapt bench scale (no 'sizes')")
        result["plan"] = plan(result)
        save_json(result, path)
        print(markdown(result))
        print(plan_markdown(result["plan"]))
        return 0
    result = run(cfg, log=lambda m: print(m, file=sys.stderr, flush=True), argv=argv)
    Path(cfg.out).with_suffix(".md").write_text(markdown(result) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
