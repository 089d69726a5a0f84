"""Speed and memory of the conditioning core on the default model, side by side in one run.

    hyperadapt bench core --batch-sizes 1 8 32 --seq 128 --out results/bench_core.json

Forward latency (plain model; our per-example LoRA with one shared adapter and with B distinct adapters;
PEFT merged, unmerged, mixed-batch, and a loop over examples), a training step (a 16-teacher bank on a
mixed batch vs one PEFT LoRA; one PEFT LoRA step with the LM head on every position vs on the answer
only), and the gated SwiGLU MLP vs the original, each with its peak memory.
Cases are measured in interleaved rounds (every case once per round) so that load from other processes
hits them alike; the first round warms up and measures memory, each time is the median over the later
rounds. Forward calls use ``logits_to_keep=1``: the LM
head is identical in every case and would only dilute the ratios.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from hyperadapt.benchmarks import Parser, command, machine
from hyperadapt.core import LINEAR_MODULES, AdapterBank, GatedMLP, conditioned, inject, peft_wrapping, remove
from hyperadapt.io import check_out_file
from hyperadapt.models import load_base_model
from hyperadapt.report.tables import markdown_table
from hyperadapt.training import IGNORE, answer_loss

QV = ("q_proj", "v_proj")
TARGETS = {"qv": QV, "all": LINEAR_MODULES}
LIMITS = {  # name: (case, reference, batch key, most allowed ratio or least allowed speed-up)
    "distinct_r8_qv_vs_plain": ("ours_distinct_r8_qv", "plain", "32", 1.25),
    "loop_vs_distinct_r8_qv": ("peft_loop_r8_qv", "ours_distinct_r8_qv", "32", 5.0),
    "bank16_step_vs_peft_step": ("bank_step_r8_qv", "peft_step_r8_qv", "train", 1.3),
    "gated_vs_mlp": ("gated_beta_BTI", "mlp", "32", 1.15),
    "answer_head_step_vs_full_head_step": (
        "peft_answer_step_answer_head_r8_qv",
        "peft_answer_step_full_head_r8_qv",
        "train",
        1.0,
    ),
}


@dataclass
class Case:
    """One thing to time: ``call`` runs it; ``setup``/``teardown`` (untimed) prepare and undo it."""

    call: Callable[[], object]
    setup: Callable[[], object] = lambda: None
    teardown: Callable[[], object] = lambda: None
    repeats: int | None = None
    times: list[float] = field(default_factory=list)
    peak: int = 0


class Meter:
    """Wall time, and peak extra memory of one call: the CUDA allocator's peak, or on the CPU the peak RSS
    growth (Linux VmHWM reset through /proc/self/clear_refs, with every allocation of 64 KiB or more
    mmapped while measuring, so that freed memory leaves the RSS and the peak is the call's own)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = "cuda_max_memory_allocated" if device.type == "cuda" else "peak_rss_growth"

    def measure(self, fn: Callable[[], object], memory: bool) -> tuple[float, int]:
        """(seconds, peak extra bytes or 0 when ``memory`` is off) of one call of ``fn``."""
        if not memory:
            return self._seconds(fn), 0
        if self.device.type == "cuda":
            self._sync()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            seconds = self._seconds(fn)
            return seconds, max(0, torch.cuda.max_memory_allocated() - before)
        _mallopt(M_MMAP_THRESHOLD, 64 * 1024)
        try:
            Path("/proc/self/clear_refs").write_text("5")
            before = _status_kib("VmRSS")
            seconds = self._seconds(fn)
            return seconds, max(0, _status_kib("VmHWM") - before) * 1024
        except OSError:
            return self._seconds(fn), 0
        finally:
            _mallopt(M_MMAP_THRESHOLD, 32 * 2**20)  # glibc's largest dynamic threshold, its steady state

    def _seconds(self, fn: Callable[[], object]) -> float:
        self._sync()
        start = time.perf_counter()
        fn()
        self._sync()
        return time.perf_counter() - start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


M_MMAP_THRESHOLD = -3


def _mallopt(param: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(param, value)


def _status_kib(key: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure_rounds(cases: dict[str, Case], repeats: int, meter: Meter) -> dict[str, dict[str, Any]]:
    """``repeats`` rounds (fewer for cases that ask), every case once per round. The first round warms up
    and measures peak memory (slower on the CPU: every allocation is mmapped), so the median is over the
    later rounds unless there is only one."""
    for r in range(repeats):
        for case in cases.values():
            if r < (case.repeats or repeats):
                seconds, peak = _in_case(case, functools.partial(meter.measure, case.call, r == 0))
                case.times.append(seconds)
                case.peak = max(case.peak, peak)
    return {
        name: {"median_s": statistics.median(c.times[1:] or c.times), "times_s": c.times, "peak_mib": c.peak / 2**20}
        for name, c in cases.items()
    }


def _in_case(case: Case, fn: Callable[[], tuple[float, int]]) -> tuple[float, int]:
    case.setup()
    try:
        return fn()
    finally:
        case.teardown()


def random_bank(model: PreTrainedModel, num_adapters: int, rank: int, targets: Sequence[str]) -> AdapterBank:
    """A bank with non-zero B, so every adapter does real work."""
    bank = AdapterBank.for_model(model, num_adapters, rank=rank, targets=targets, alpha=2 * rank)
    with torch.no_grad():
        for b in bank.lora_B:
            b.normal_(std=0.01)
    return bank


def ours_case(
    model: PreTrainedModel, bank: AdapterBank, targets: Sequence[str], index: torch.Tensor, ids: torch.Tensor
) -> Case:
    """Our wrappers on ``targets`` only; timed: gather from the bank, enter the context, forward."""

    def call() -> None:
        with torch.inference_mode(), conditioned(model, lora=bank.conditioning(index)):
            model(ids, logits_to_keep=1)

    return Case(call, setup=lambda: inject(model, targets=targets, gating=False), teardown=lambda: remove(model))


def forward_cases(
    model: PreTrainedModel,
    peft_model: PeftModel,
    banks: dict[tuple[int, str], AdapterBank],
    ids: torch.Tensor,
    loop_repeats: int,
    extras: bool,
) -> dict[str, Case]:
    n = ids.shape[0]
    distinct = torch.randperm(banks[8, "qv"].num_adapters, device=ids.device)[:n]  # a mixed batch
    shared = torch.zeros(n, dtype=torch.long, device=ids.device)
    names = [f"a{i}" for i in range(n)]

    def plain() -> None:
        with torch.inference_mode():
            model(ids, logits_to_keep=1)

    def peft(**kw: object) -> None:
        with torch.inference_mode():
            peft_model(ids, logits_to_keep=1, **kw)

    def loop() -> None:
        with torch.inference_mode():
            for i, name in enumerate(names):
                peft_model.set_adapter(name)
                peft_model(ids[i : i + 1], logits_to_keep=1)

    cases = {"plain": Case(plain), "ours_shared_r8_qv": ours_case(model, banks[8, "qv"], QV, shared, ids)}
    for rank in (8, 32):
        for kind, targets in TARGETS.items():
            cases[f"ours_distinct_r{rank}_{kind}"] = ours_case(model, banks[rank, kind], targets, distinct, ids)
    cases["peft_merged_r8_qv"] = Case(peft, setup=lambda: _peft_merge(peft_model), teardown=peft_model.unmerge_adapter)
    cases["peft_unmerged_r8_qv"] = Case(peft, setup=lambda: peft_model.set_adapter("a0"))
    if extras:
        cases["peft_mixed_batch_r8_qv"] = Case(lambda: peft(adapter_names=names))
    cases["peft_loop_r8_qv"] = Case(loop, repeats=loop_repeats)
    return cases


def _peft_merge(peft_model: PeftModel) -> None:
    peft_model.set_adapter("a0")
    peft_model.merge_adapter()


def train_cases(
    model: PreTrainedModel,
    peft_model: PeftModel,
    ids: torch.Tensor,
    teachers: int,
    extras: bool,
    answer_tokens: int = 32,
) -> dict[str, Case]:
    """One optimiser step: a bank of ``teachers`` adapters on a mixed batch, one PEFT LoRA, and with
    ``extras`` the bank with one adapter for the whole batch (all rank 8 on q, v; AdamW). Then the PEFT step
    on a prompt-and-answer batch (the loss on the last ``answer_tokens`` tokens only, as every method trains)
    twice: the LM head on every position (``model(**batch).loss``) and on the answer only (``answer_loss``)."""
    bank = random_bank(model, teachers, 8, QV)
    bank_opt = torch.optim.AdamW(bank.parameters(), lr=1e-4)
    mixed = torch.randperm(ids.shape[0], device=ids.device) % teachers  # every teacher, when batch >= teachers
    one = torch.zeros_like(mixed)
    peft_params = [p for n, p in peft_model.named_parameters() if ".a0." in n]
    peft_opt = torch.optim.AdamW(peft_params, lr=1e-4)

    def bank_step(index: torch.Tensor) -> None:
        with conditioned(model, lora=bank.conditioning(index)):
            model(ids, labels=ids).loss.backward()
        bank_opt.step()
        bank_opt.zero_grad(set_to_none=True)

    def peft_step() -> None:
        peft_model(ids, labels=ids).loss.backward()
        peft_opt.step()
        peft_opt.zero_grad(set_to_none=True)

    labels = ids.clone()
    labels[:, : max(ids.shape[1] - answer_tokens, 1)] = IGNORE  # the prompt: no loss there
    answer_batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    def peft_answer_step(head_on_answer_only: bool) -> None:
        loss = answer_loss(peft_model, answer_batch) if head_on_answer_only else peft_model(**answer_batch).loss
        loss.backward()
        peft_opt.step()
        peft_opt.zero_grad(set_to_none=True)

    def peft_setup() -> None:
        peft_model.set_adapter("a0")
        for p in peft_params:
            p.requires_grad_(True)

    def ours_setup() -> None:
        inject(model, targets=QV, gating=False)

    cases = {
        "bank_step_r8_qv": Case(lambda: bank_step(mixed), setup=ours_setup, teardown=lambda: remove(model)),
        "peft_step_r8_qv": Case(peft_step, setup=peft_setup),
        "peft_answer_step_full_head_r8_qv": Case(lambda: peft_answer_step(False), setup=peft_setup),
        "peft_answer_step_answer_head_r8_qv": Case(lambda: peft_answer_step(True), setup=peft_setup),
    }
    if extras:
        cases["ours_one_adapter_step_r8_qv"] = Case(
            lambda: bank_step(one), setup=ours_setup, teardown=lambda: remove(model)
        )
    return cases


def gating_cases(model: PreTrainedModel, batch: int, seq: int, device: torch.device) -> dict[str, Case]:
    """Layer 0's MLP alone: the original, and Swish_β with β [B, T, I] (MeGan's form) and [B, 1, I]."""
    mlp = model.get_submodule("model.layers.0.mlp")
    gated = GatedMLP(mlp, 0, "model.layers.0.mlp")
    dtype = next(mlp.parameters()).dtype
    x = torch.randn(batch, seq, model.config.hidden_size, device=device, dtype=dtype)
    inter = model.config.intermediate_size
    betas = {
        "gated_beta_BTI": 1 + 0.5 * torch.tanh(torch.randn(batch, seq, inter, device=device, dtype=dtype)),
        "gated_beta_B1I": 1 + 0.5 * torch.tanh(torch.randn(batch, 1, inter, device=device, dtype=dtype)),
    }

    def run(module: torch.nn.Module) -> None:
        with torch.inference_mode():
            module(x)

    cases = {"mlp": Case(lambda: run(mlp))}
    for name, beta in betas.items():
        cases[name] = Case(lambda: run(gated), setup=functools.partial(setattr, gated, "beta", beta))
    return cases


def make_peft(model: PreTrainedModel, adapters: int) -> PeftModel:
    """A PEFT copy of ``model`` with ``adapters`` random rank-8 q, v adapters named a0, a1, ..."""
    config = LoraConfig(r=8, lora_alpha=16, target_modules=list(QV), init_lora_weights=False)
    with peft_wrapping():
        peft_model = get_peft_model(copy.deepcopy(model), config, adapter_name="a0")
    for i in range(1, adapters):
        peft_model.add_adapter(f"a{i}", config)
    return peft_model.eval()


def add_ratios(table: dict[str, dict[str, Any]], reference: str) -> None:
    ref = table[reference]["median_s"]
    for row in table.values():
        row[f"vs_{reference}"] = row["median_s"] / ref


class Target(TypedDict):
    """One target of ``LIMITS``: its measured ratio, the limit, and whether it is met."""

    target: str
    ratio: float
    limit: float
    met: bool


def check_targets(results: dict[str, Any]) -> list[Target]:
    """Each target of the issue, its measured ratio, and whether it is met."""
    out: list[Target] = []
    sections = {"train": results["train_step"], **results["forward"]}
    for name, (case, ref, key, limit) in LIMITS.items():
        section = results["gating"].get(key) if case.startswith(("gated", "mlp")) else sections.get(key)
        if section is None or case not in section or ref not in section:
            continue
        ratio = section[case]["median_s"] / section[ref]["median_s"]
        met = ratio >= limit if name.startswith("loop") else ratio <= limit
        out.append({"target": name, "ratio": ratio, "limit": limit, "met": met})
    return out


@dataclass
class BenchConfig:
    """What to measure; the defaults take about 10 minutes on one CPU thread (SmolLM2-135M, fp32)."""

    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    seq: int = 128
    repeats: int = 3
    loop_repeats: int = 2
    train_repeats: int = 3
    train_batch: int = 16
    answer_tokens: int = 32
    teachers: int = 16
    extras: bool = False
    device: str | None = None
    threads: int = 1
    model: str = "default"
    out: str | None = "results/bench_core.json"


def run(
    config: BenchConfig | None = None, log: Callable[[str], None] = print, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """Run the whole benchmark; returns the results dict (and writes it as JSON to ``config.out``); ``argv``,
    the options it was given (default ``sys.argv[1:]``), goes into the recorded command."""
    cfg = config or BenchConfig()
    if cfg.out is not None:
        check_out_file(cfg.out, "--out")
    start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model, _ = load_base_model(cfg.model, device=cfg.device)
    dev = next(model.parameters()).device
    meter = Meter(dev)
    vocab = model.config.vocab_size
    torch.manual_seed(0)
    n = max(cfg.batch_sizes)
    peft_model = make_peft(model, n)
    banks = {(r, k): random_bank(model, n, r, t) for r in (8, 32) for k, t in TARGETS.items()}
    results: dict[str, Any] = {"forward": {}, "gating": {}}
    for b in cfg.batch_sizes:
        log(f"forward, batch {b} ...")
        ids = torch.randint(0, vocab, (b, cfg.seq), device=dev)
        cases = forward_cases(model, peft_model, banks, ids, cfg.loop_repeats, cfg.extras)
        results["forward"][str(b)] = measure_rounds(cases, cfg.repeats, meter)
        add_ratios(results["forward"][str(b)], "plain")
        results["gating"][str(b)] = measure_rounds(gating_cases(model, b, cfg.seq, dev), max(cfg.repeats, 5), meter)
        add_ratios(results["gating"][str(b)], "mlp")
    log(f"training step, batch {cfg.train_batch} ...")
    ids = torch.randint(0, vocab, (cfg.train_batch, cfg.seq), device=dev)
    cases = train_cases(model, peft_model, ids, cfg.teachers, cfg.extras, cfg.answer_tokens)
    results["train_step"] = measure_rounds(cases, cfg.train_repeats, meter)
    add_ratios(results["train_step"], "peft_step_r8_qv")
    results["targets"] = check_targets(results)
    results["setup"] = {
        **asdict(cfg),
        "model": model.config._name_or_path,
        "dtype": str(model.dtype),
        "device": str(dev),
        "memory": meter.method,
        "forward_calls": "logits_to_keep=1, inference_mode",
        "command": command("core", argv),
        "machine": machine(),
        "wall_s": time.perf_counter() - start,
    }
    if cfg.out is not None:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(results, indent=2))
    return results


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables: latency (s), ratio to the reference, peak extra memory (MiB)."""
    fwd, gating = results["forward"], results["gating"]
    sizes = list(fwd)
    batches = [f"B={b}" for b in sizes]
    tables = [
        markdown_table(
            [f"forward, seq {results['setup']['seq']}", *batches],
            [[case, *(_cell(fwd[b][case], "vs_plain") for b in sizes)] for case in fwd[sizes[0]]],
        ),
        markdown_table(
            ["gated SwiGLU, layer-0 MLP", *batches],
            [[case, *(_cell(gating[b][case], "vs_mlp") for b in sizes)] for case in gating[sizes[0]]],
        ),
        markdown_table(
            [f"training step, batch {results['setup']['train_batch']}", "time"],
            [[case, _cell(row, "vs_peft_step_r8_qv")] for case, row in results["train_step"].items()],
        ),
        markdown_table(
            ["target", "measured", "limit", "met"],
            [
                [t["target"], f"{t['ratio']:.2f}×", f"{t['limit']}×", "yes" if t["met"] else "no"]
                for t in results["targets"]
            ],
        ),
    ]
    return "\n\n".join(tables)


def _cell(row: dict[str, Any], ratio_key: str) -> str:
    return f"{row['median_s'] * 1e3:.1f} ms ({row[ratio_key]:.2f}×, {row['peak_mib']:.0f} MiB)"


def parse_args(argv: Sequence[str] | None) -> BenchConfig:
    p = Parser(prog="hyperadapt bench core", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="rounds; the first measures memory, the rest time")
    p.add_argument("--loop-repeats", type=int, default=2, help="rounds for the loop-over-examples baseline")
    p.add_argument("--train-repeats", type=int, default=3, help="rounds for the training steps")
    p.add_argument("--train-batch", type=int, default=16)
    p.add_argument(
        "--answer-tokens",
        type=int,
        default=32,
        help="answer length of the prompt-and-answer training steps (full vs answer-only LM head)",
    )
    p.add_argument("--teachers", type=int, default=16)
    p.add_argument("--extras", action="store_true", help="also PEFT's mixed-batch forward and a one-adapter step")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch's default)")
    p.add_argument("--model", default="default")
    p.add_argument("--out", default="results/bench_core.json")
    return BenchConfig(**vars(p.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: run, write the JSON, print the Markdown tables."""
    results = run(parse_args(argv), log=lambda m: print(m, file=sys.stderr, flush=True), argv=argv)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
