"""Load benchmark of ``hyperadapt serve`` over loopback: many conditions at once vs one, batched vs sequential.

    hyperadapt bench serve --model tiny --out results/bench_serve.json
    hyperadapt bench serve --model default --requests 64 --max-tokens 16 --out results/bench_serve.default.json
    hyperadapt bench serve --model default --run tagi=checkpoints/tagi-smollm2-135m-sni \
        --run megan=checkpoints/megan-smollm2-135m-sni --soak 180 --out results/bench_serve.soak.json

The server runs in this process (uvicorn in a thread) with a TAGI-style hypernetwork (random weights, the
shapes of a real run: rank 8 on q_proj/v_proj) on the chosen base model; clients are ``--clients`` concurrent
asyncio tasks over HTTP. Phases, each on the same prompts with greedy decoding and a fixed answer length:

- ``mixed``: every request its own condition (cycling over ``--clients`` conditions), cache warm;
- ``single``: the same requests, all under one condition;
- ``sequential``: the mixed requests on a server that answers one request at a time (``max_batch=1``);
- ``distinct``: one batch of ``--batch`` requests with 1, 8, 32, 128 distinct conditions;
- ``cached``: 100, 1,000, 10,000 generated adapters held in the cache: bytes each, total, resident memory;
- ``soak`` (``--soak SECONDS``): ``--clients`` clients for that long, each request drawn at random: a good
  one (any served run or the base model, streamed or not), one whose client leaves mid-answer (streamed or
  not), or a bad one (out-of-range sampling, lone surrogates, refused or unknown fields, too many prompts).
  Reports the 5xx answers (target 0), requests that never ended (a client timeout on a request that stayed,
  or rows still active on the server afterwards; target 0), the resident memory before and after, and the
  answers by status.

``--run NAME=PATH`` (repeatable) serves trained runs (e.g. the released checkpoints) instead of a random
hypernetwork: the first one answers the throughput phases, all of them the soak. Reports throughput
(requests/s, generated tokens/s) and p50/p99 latency; ``mixed_vs_single`` (tokens/s) and
``mixed_vs_single_requests`` are mixed over single-condition throughput (our target: at least 0.8 both).
Bounded in time by the request counts, ``--soak`` (and ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import time
from pathlib import Path
from typing import Any, TypedDict

import httpx
import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt.benchmarks import Parser, command, machine
from hyperadapt.benchmarks.common import drive_load
from hyperadapt.core.rows import Servable, fold
from hyperadapt.io import check_out_file
from hyperadapt.methods.tagi import TagiMethod
from hyperadapt.runs import Run
from hyperadapt.serve import ByteLRU, RunningServer, ServeConfig, Server, build_server, create_app
from hyperadapt.serve.cache import tensor_bytes
from hyperadapt.serve.server import parse_named
from hyperadapt.testing import random_tagi_method

ModelAndTokenizer = tuple[PreTrainedModel, Tokenizer]
PROMPTS = ["the answer is", "a b c d", "Write the numbers 1 2 3", "is 4 even"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(prog="hyperadapt bench serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny", help="tiny (built in code), default, a HF id or a folder")
    p.add_argument("--requests", type=int, default=128, help="requests per throughput phase")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (and distinct conditions, mixed)")
    p.add_argument("--max-tokens", type=int, default=16, help="tokens generated per request (no early stop)")
    p.add_argument("--batch", type=int, default=128, help="requests in the distinct-conditions phase")
    p.add_argument("--distinct", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--cached", type=int, nargs="+", default=[100, 1_000, 10_000])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--run", action="append", default=[], help="NAME=PATH of a trained run to serve (repeatable)")
    p.add_argument("--soak", type=float, default=0.0, help="seconds of the soak phase (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the soak's random requests")
    p.add_argument("--quick", action="store_true", help="a smoke run: few requests, small cache counts")
    p.add_argument("--out", type=Path, default=Path("results/bench_serve.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.batch, args.distinct, args.cached = 16, 16, [1, 8], [10, 100]
    args.clients = min(args.clients, args.requests)  # a client without a request would not be one
    return args


def load_model(name: str) -> ModelAndTokenizer:
    if name == "tiny":
        from hyperadapt.testing import tiny_model

        return tiny_model()
    from hyperadapt.models import load_base_model

    return load_base_model(name, dtype="float32")


def hypernet_method(model: PreTrainedModel, tok: Tokenizer) -> TagiMethod:
    """TAGI's hypernetwork with random B heads (an untrained one would give ΔW = 0 and hide the cost)."""
    return random_tagi_method(
        model, tok, rank=8, hidden=256, blocks=2, std=0.02, max_instruction_tokens=32, run="benchmark"
    )


def condition(i: int) -> str:
    return f"Task {i}: answer in style number {i}."


def bodies(n: int, conditions: list[str], max_tokens: int) -> list[dict[str, Any]]:
    # "stop": [] and an end-of-turn-free prompt: the tiny models rarely stop early; the count is reported anyway
    return [
        {
            "model": "tagi",
            "prompt": PROMPTS[i % len(PROMPTS)],
            "condition": conditions[i % len(conditions)],
            "max_tokens": max_tokens,
            "temperature": 0,
        }
        for i in range(n)
    ]


def serve(
    model_and_tokenizer: ModelAndTokenizer, methods: dict[str, Servable], **cfg: Any
) -> tuple[RunningServer, Server]:
    server = build_server([], ServeConfig(**cfg), model_and_tokenizer=model_and_tokenizer, methods=methods)
    return RunningServer(create_app(server)), server


def warm(url: str, conditions: list[str], model: str = "tagi") -> None:
    with httpx.Client(base_url=url, timeout=600) as client:
        for c in conditions:
            client.post("/v1/completions", json={"model": model, "prompt": "x", "condition": c, "max_tokens": 1})


def rss_mb() -> float:
    """Peak resident memory of this process (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident memory of this process now (MiB; Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def throughput_phases(args: argparse.Namespace, mt: ModelAndTokenizer, method: Servable) -> dict[str, Any]:
    out: dict[str, Any] = {}
    mixed_conditions = [condition(i) for i in range(args.clients)]
    running, _ = serve(
        mt,
        {"tagi": method},
        max_batch=max(args.clients, args.batch, max(args.distinct)),
        gather_ms=5.0,
        max_tokens=args.max_tokens,
    )
    try:
        warm(running.url, [*mixed_conditions, condition(10_000 + 0)])
        out["mixed"] = asyncio.run(
            drive_load(running.url, bodies(args.requests, mixed_conditions, args.max_tokens), args.clients)
        )
        out["single"] = asyncio.run(
            drive_load(running.url, bodies(args.requests, [condition(10_000)], args.max_tokens), args.clients)
        )
        out["distinct"] = {}
        for k in args.distinct:
            conds = [condition(20_000 + i) for i in range(k)]
            warm(running.url, conds)
            res = asyncio.run(drive_load(running.url, bodies(args.batch, conds, args.max_tokens), args.batch))
            out["distinct"][str(k)] = {**res, "max_rss_mb": round(rss_mb(), 1)}
    finally:
        running.stop()
    running, _ = serve(mt, {"tagi": method}, max_batch=1, gather_ms=0.0, max_tokens=args.max_tokens)
    try:
        out["sequential"] = asyncio.run(
            drive_load(running.url, bodies(args.requests, mixed_conditions, args.max_tokens), args.clients)
        )
    finally:
        running.stop()
    out["mixed_vs_single"] = round(out["mixed"]["tokens_per_s"] / out["single"]["tokens_per_s"], 3)
    out["mixed_vs_single_requests"] = round(out["mixed"]["requests_per_s"] / out["single"]["requests_per_s"], 3)
    out["mixed_vs_sequential"] = round(out["mixed"]["tokens_per_s"] / out["sequential"]["tokens_per_s"], 3)
    return out


SOAK_CONDITIONS = 64  # the soak's conditions, all cached before its memory is measured
SOAK_BAD: list[tuple[dict[str, Any], int]] = [  # (body changes, the status they must get)
    ({"seed": 2**64}, 400),
    ({"temperature": 1e-45}, 200),
    ({"top_p": 0}, 400),
    ({"best_of": 3}, 400),
    ({"logit_bias": {"5": 9}}, 400),
    ({"max_token": 3}, 400),
    ({"prompt": ["a"] * 65}, 400),
    ({"stop": ["\ud800"]}, 400),
    ({"condition": "Add \ud800"}, 400),
    ({"logprobs": 2}, 200),
    ({"echo": True}, 200),
]


SoakTally = TypedDict(
    "SoakTally",
    {"status": dict[str, int], "5xx": int, "never_ended": int, "left": int, "unexpected": list[dict[str, object]]},
)  # the soak's answers by status, 5xx answers, requests that never ended or whose client left, wrong statuses


def soak_body(rng: random.Random, models: list[str], max_tokens: int) -> dict[str, Any]:
    model = rng.choice(models)
    body: dict[str, Any] = {
        "model": model,
        "prompt": rng.choice(PROMPTS),
        "max_tokens": rng.randint(1, max_tokens),
        "temperature": rng.choice([0, 0.7]),
    }
    if model != "base":
        body["condition"] = condition(rng.randrange(SOAK_CONDITIONS))
    return body


async def _soak_one(
    client: httpx.AsyncClient, rng: random.Random, models: list[str], args: argparse.Namespace, tally: SoakTally
) -> None:
    body, kind, expect = soak_body(rng, models, args.max_tokens), rng.random(), None
    stream = rng.random() < 0.5
    if kind < 0.15:  # a bad request (or a hostile but valid one), answered whole
        change, expect = rng.choice(SOAK_BAD)
        body, stream = {**body, **change}, False
    leave = 0.15 <= kind < 0.3
    timeout = rng.uniform(0.05, 1.0) if leave else 300.0
    try:
        if stream:
            async with client.stream("POST", "/v1/completions", json={**body, "stream": True}, timeout=timeout) as r:
                status = r.status_code
                async for _ in r.aiter_lines():
                    pass
        else:
            status = (
                await client.post(
                    "/v1/completions",
                    content=json.dumps(body),
                    timeout=timeout,
                    headers={"content-type": "application/json"},
                )
            ).status_code
    except httpx.TimeoutException:
        tally["left" if leave else "never_ended"] += 1
        return
    tally["status"][str(status)] = tally["status"].get(str(status), 0) + 1
    if status >= 500 and status != 503:
        tally["5xx"] += 1
    if expect is not None and status != expect:
        tally["unexpected"].append({"body": str(body)[:200], "status": status})


async def _soak(url: str, models: list[str], args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    tally: SoakTally = {"status": {}, "5xx": 0, "never_ended": 0, "left": 0, "unexpected": []}
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def worker(seed: int) -> int:
            rng, n = random.Random(seed), 0
            while time.perf_counter() < deadline:
                await _soak_one(client, rng, models, args, tally)
                n += 1
            return n

        sent = sum(await asyncio.gather(*(worker(args.seed * 1000 + i) for i in range(args.clients))))
    return {"requests": sent, **tally}


def soak_phase(args: argparse.Namespace, mt: ModelAndTokenizer, methods: dict[str, Servable]) -> dict[str, Any]:
    """``--soak`` seconds of random good, leaving and bad clients on one server (see the module docstring)."""
    running, server = serve(mt, methods, max_batch=args.clients, gather_ms=5.0, max_tokens=args.max_tokens)
    try:
        models = [*methods, "base"]
        asyncio.run(_soak(running.url, models, args, 5.0))  # warm: the first allocations are not growth
        for name, target in server.targets.items():  # and a full condition cache is not growth either
            if target.needs_condition:
                warm(running.url, [condition(i) for i in range(SOAK_CONDITIONS)], name)
        rss0, cache0 = current_rss_mb(), server.cache.bytes
        start = time.perf_counter()
        out = asyncio.run(_soak(running.url, models, args, args.soak))
        wall = time.perf_counter() - start
        deadline = time.monotonic() + 60
        while (server.metrics.active or server.metrics.waiting) and time.monotonic() < deadline:
            time.sleep(0.1)
        out |= {
            "seconds": round(wall, 1),
            "still_active": server.metrics.active + server.metrics.waiting,
            "rss_mb_before": round(rss0, 1),
            "rss_mb_after": round(current_rss_mb(), 1),
            "cancelled_total": server.metrics.cancelled,
            "condition_cache_mb_before": round(cache0 / 2**20, 1),
            "condition_cache_mb_after": round(server.cache.bytes / 2**20, 1),
        }
        out["never_ended"] += out["still_active"]
        out["rss_growth_mb"] = round(out["rss_mb_after"] - out["rss_mb_before"], 1)
    finally:
        running.stop()
    return out


@torch.no_grad()
def cached_phase(args: argparse.Namespace, method: TagiMethod) -> dict[str, Any]:
    """Fill a cache with generated adapters (from random instruction vectors, in chunks) and measure it."""
    out: dict[str, Any] = {}
    net = method.hypernet
    for n in args.cached:
        cache = ByteLRU(2**62)
        rss0 = rss_mb()
        start = time.perf_counter()
        for lo in range(0, n, 256):
            vectors = torch.randn(min(256, n - lo), net.input_dim)
            factors = net.factors(vectors)  # {path: ([k, r, in], [k, out, r])}
            for j in range(vectors.shape[0]):
                cache.put(
                    ("tagi", lo + j),
                    fold({p: (a[j : j + 1].clone(), b[j : j + 1].clone()) for p, (a, b) in factors.items()}, net.scale),
                )
        build = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(1000):
            cache.get(("tagi", (i * 7919) % n))
        lookup_us = (time.perf_counter() - start) / 1000 * 1e6
        per = cache.bytes / n
        out[str(n)] = {
            "bytes_per_adapter": int(per),
            "total_mb": round(cache.bytes / 2**20, 1),
            "generate_s": round(build, 3),
            "lookup_us": round(lookup_us, 2),
            "max_rss_growth_mb": round(rss_mb() - rss0, 1),
            "fit_in_512mb": int(512 * 2**20 // per),
        }
        del cache
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    check_out_file(args.out, "--out")
    torch.set_num_threads(args.threads)
    mt = load_model(args.model)
    methods = {name: Run.open(path).load(mt) for name, path in map(parse_named, args.run)}
    method = next(iter(methods.values())) if methods else hypernet_method(*mt)
    result: dict[str, Any] = {
        "command": command("serve", argv),
        "machine": machine(),
        "model": args.model,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        **throughput_phases(args, mt, method),
    }
    if hasattr(method, "hypernet"):  # a TAGI-style method: what one adapter and a full cache cost
        one = fold(method.hypernet.factors(method.vectors([condition(0)])), method.hypernet.scale)
        result |= {"adapter_bytes": tensor_bytes(one), "cached": cached_phase(args, method)}
    if args.soak > 0:
        result["soak"] = soak_phase(args, mt, methods or {"tagi": method})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "mixed",
                    "single",
                    "sequential",
                    "mixed_vs_single",
                    "mixed_vs_single_requests",
                    "mixed_vs_sequential",
                    "soak",
                )
                if k in result
            },
            indent=1,
        )
    )
    return result


if __name__ == "__main__":
    main()
