"""Load benchmark of ``hyperadapt serve`` over loopback: many conditions at once vs one, batched vs sequential.

    hyperadapt bench serve --model tiny --out results/bench_serve.json
    hyperadapt bench serve --model default --requests 64 --max-tokens 16 --out results/bench_serve.default.json

The server runs in this process (uvicorn in a thread) with a TAGI-style hypernetwork (random weights, the
shapes of a real run: rank 8 on q_proj/v_proj) on the chosen base model; clients are ``--clients`` concurrent
asyncio tasks over HTTP. Phases, each on the same prompts with greedy decoding and a fixed answer length:

- ``mixed``: every request its own condition (cycling over ``--clients`` conditions), cache warm;
- ``single``: the same requests, all under one condition;
- ``sequential``: the mixed requests on a server that answers one request at a time (``max_batch=1``);
- ``distinct``: one batch of ``--batch`` requests with 1, 8, 32, 128 distinct conditions;
- ``cached``: 100, 1,000, 10,000 generated adapters held in the cache: bytes each, total, resident memory.

Reports throughput (requests/s, generated tokens/s) and p50/p99 latency; ``mixed_vs_single`` is mixed over
single-condition throughput (our target: at least 0.8). Bounded in time by the request counts (and ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import httpx
import torch

from hyperadapt.benchmarks import Parser
from hyperadapt.io import check_out_file
from hyperadapt.serve import ByteLRU, RunningServer, ServeConfig, build_server, create_app
from hyperadapt.serve.cache import tensor_bytes
from hyperadapt.serve.runs import fold
from hyperadapt.testing import random_tagi_method

PROMPTS = ["the answer is", "a b c d", "Write the numbers 1 2 3", "is 4 even"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(prog="hyperadapt bench serve", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny", help="tiny (built in code), default, a HF id or a folder")
    p.add_argument("--requests", type=int, default=128, help="requests per throughput phase")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (and distinct conditions, mixed)")
    p.add_argument("--max-tokens", type=int, default=16, help="tokens generated per request (no early stop)")
    p.add_argument("--batch", type=int, default=128, help="requests in the distinct-conditions phase")
    p.add_argument("--distinct", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--cached", type=int, nargs="+", default=[100, 1_000, 10_000])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="a smoke run: few requests, small cache counts")
    p.add_argument("--out", type=Path, default=Path("results/bench_serve.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.batch, args.distinct, args.cached = 16, 16, [1, 8], [10, 100]
    args.clients = min(args.clients, args.requests)  # a client without a request would not be one
    return args


def load_model(name: str):
    if name == "tiny":
        from hyperadapt.testing import tiny_model

        return tiny_model()
    from hyperadapt.models import load_base_model

    return load_base_model(name, dtype="float32")


def hypernet_method(model, tok):
    """TAGI's hypernetwork with random B heads (an untrained one would give ΔW = 0 and hide the cost)."""
    return random_tagi_method(model, tok, rank=8, hidden=256, blocks=2, std=0.02, max_instruction_tokens=32,
                              run="benchmark")


def condition(i: int) -> str:
    return f"Task {i}: answer in style number {i}."


async def _one(client: httpx.AsyncClient, body: dict, latencies: list[float]) -> int:
    start = time.perf_counter()
    r = await client.post("/v1/completions", json=body)
    r.raise_for_status()
    latencies.append(time.perf_counter() - start)
    return r.json()["usage"]["completion_tokens"]


async def _load(url: str, bodies: list[dict], clients: int) -> dict:
    latencies: list[float] = []
    queue = list(reversed(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        async def worker() -> int:
            tokens = 0
            while queue:
                tokens += await _one(client, queue.pop(), latencies)
            return tokens

        start = time.perf_counter()
        tokens = sum(await asyncio.gather(*(worker() for _ in range(clients))))
        wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {"requests": len(bodies), "clients": clients, "seconds": round(wall, 3),
            "requests_per_s": round(len(bodies) / wall, 3), "tokens_per_s": round(tokens / wall, 2),
            "p50_s": round(statistics.median(latencies), 4), "p99_s": round(q[98], 4)}


def bodies(n: int, conditions: list[str], max_tokens: int) -> list[dict]:
    # "stop": [] and an end-of-turn-free prompt: the tiny models rarely stop early; the count is reported anyway
    return [{"model": "tagi", "prompt": PROMPTS[i % len(PROMPTS)], "condition": conditions[i % len(conditions)],
             "max_tokens": max_tokens, "temperature": 0} for i in range(n)]


def serve(model_and_tokenizer, method, **cfg) -> tuple[RunningServer, object]:
    server = build_server([], ServeConfig(**cfg), model_and_tokenizer=model_and_tokenizer, methods={"tagi": method})
    return RunningServer(create_app(server)), server


def warm(url: str, conditions: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=600) as client:
        for c in conditions:
            client.post("/v1/completions", json={"model": "tagi", "prompt": "x", "condition": c, "max_tokens": 1})


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def throughput_phases(args, mt, method) -> dict:
    out = {}
    mixed_conditions = [condition(i) for i in range(args.clients)]
    running, _ = serve(mt, method, max_batch=max(args.clients, args.batch, max(args.distinct)), gather_ms=5.0,
                       max_tokens=args.max_tokens)
    try:
        warm(running.url, [*mixed_conditions, condition(10_000 + 0)])
        out["mixed"] = asyncio.run(_load(running.url, bodies(args.requests, mixed_conditions, args.max_tokens),
                                         args.clients))
        out["single"] = asyncio.run(_load(running.url, bodies(args.requests, [condition(10_000)], args.max_tokens),
                                          args.clients))
        out["distinct"] = {}
        for k in args.distinct:
            conds = [condition(20_000 + i) for i in range(k)]
            warm(running.url, conds)
            res = asyncio.run(_load(running.url, bodies(args.batch, conds, args.max_tokens), args.batch))
            out["distinct"][str(k)] = {**res, "max_rss_mb": round(rss_mb(), 1)}
    finally:
        running.stop()
    running, _ = serve(mt, method, max_batch=1, gather_ms=0.0, max_tokens=args.max_tokens)
    try:
        out["sequential"] = asyncio.run(_load(running.url, bodies(args.requests, mixed_conditions, args.max_tokens),
                                              args.clients))
    finally:
        running.stop()
    out["mixed_vs_single"] = round(out["mixed"]["tokens_per_s"] / out["single"]["tokens_per_s"], 3)
    out["mixed_vs_sequential"] = round(out["mixed"]["tokens_per_s"] / out["sequential"]["tokens_per_s"], 3)
    return out


@torch.no_grad()
def cached_phase(args, method) -> dict:
    """Fill a cache with generated adapters (from random instruction vectors, in chunks) and measure it."""
    out = {}
    net = method.hypernet
    for n in args.cached:
        cache = ByteLRU(2**62)
        rss0 = rss_mb()
        start = time.perf_counter()
        for lo in range(0, n, 256):
            vectors = torch.randn(min(256, n - lo), net.input_dim)
            factors = net.factors(vectors)  # {path: ([k, r, in], [k, out, r])}
            for j in range(vectors.shape[0]):
                cache.put(("tagi", lo + j), fold({p: (a[j : j + 1].clone(), b[j : j + 1].clone())
                                                  for p, (a, b) in factors.items()}, net.scale))
        build = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(1000):
            cache.get(("tagi", (i * 7919) % n))
        lookup_us = (time.perf_counter() - start) / 1000 * 1e6
        per = cache.bytes / n
        out[str(n)] = {"bytes_per_adapter": int(per), "total_mb": round(cache.bytes / 2**20, 1),
                       "generate_s": round(build, 3), "lookup_us": round(lookup_us, 2),
                       "max_rss_growth_mb": round(rss_mb() - rss0, 1),
                       "fit_in_512mb": int(512 * 2**20 // per)}
        del cache
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    check_out_file(args.out, "--out")
    torch.set_num_threads(args.threads)
    mt = load_model(args.model)
    method = hypernet_method(*mt)
    one = fold(method.hypernet.factors(method.vectors([condition(0)])), method.hypernet.scale)
    result = {"model": args.model, "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
              "adapter_bytes": tensor_bytes(one), **throughput_phases(args, mt, method),
              "cached": cached_phase(args, method)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("mixed", "single", "sequential", "mixed_vs_single",
                                             "mixed_vs_sequential")}, indent=1))
    return result


if __name__ == "__main__":
    main()
