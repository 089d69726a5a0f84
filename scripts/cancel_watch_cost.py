"""CPU cost of watching open requests for cancellation in the server's event loop, ways side by side.

The vLLM engine's answers (``--part vllm``): ``per-request``, each open request polls its own flag every 0.1 s
(``asyncio.wait(..., timeout=0.1)``), as ``VllmEngine._run`` did before 2026-12-08; ``sweeper``, one task checks
every open request every 0.1 s (``VllmEngine._sweep``).

The HTTP layer's clients (``--part front``): ``poll``, each open request asks Starlette's
``Request.is_disconnected()`` every 0.1 s, as ``endpoints.common.watched`` did before 2026-12-08; ``receive``, each
open request awaits its ASGI ``receive()`` until the ``http.disconnect`` message (``engine.cancel_on_disconnect``).
The ASGI ``receive`` here is a stand-in for uvicorn's (after the body, it waits on an ``asyncio.Event`` that the
connection's loss sets), so the loop's own cost is measured, not uvicorn's parsing.

The answers are stand-ins that never finish (``asyncio.sleep``), so only the watching costs CPU. Prints JSON: the
share of one core each way uses, per number of open requests.

    python scripts/cancel_watch_cost.py --part vllm --open 100 1024 --seconds 5
    python scripts/cancel_watch_cost.py --part front --open 100 1024 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time

POLL_S = 0.1


async def _measure(open_requests: int, way: str, seconds: float) -> float:
    cancelled = False
    answers: dict[int, asyncio.Future[None]] = {}

    async def per_request(i: int) -> None:
        task = asyncio.ensure_future(asyncio.sleep(10**6))
        while not task.done():
            await asyncio.wait({task}, timeout=POLL_S)
            if cancelled and not task.done():
                task.cancel()

    async def swept(i: int) -> None:
        answers[i] = task = asyncio.ensure_future(asyncio.sleep(10**6))
        try:
            await asyncio.wait({task})
        finally:
            answers.pop(i, None)

    async def sweep() -> None:
        while True:
            await asyncio.sleep(POLL_S)
            for task in list(answers.values()):
                if cancelled and not task.done():
                    task.cancel()

    sweeper = asyncio.ensure_future(sweep()) if way == "sweeper" else None
    run = swept if way == "sweeper" else per_request
    requests = [asyncio.ensure_future(run(i)) for i in range(open_requests)]
    await asyncio.sleep(0.5)  # every request is waiting
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    cancelled = True
    await asyncio.gather(*requests, return_exceptions=True)
    if sweeper is not None:
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
    return share


async def _measure_front(open_requests: int, way: str, seconds: float) -> float:
    from starlette.requests import Request

    gone = asyncio.Event()  # the connections' loss (set once, when the measurement ends)

    async def receive() -> dict[str, str]:  # as uvicorn's, once the body has been read
        await gone.wait()
        return {"type": "http.disconnect"}

    async def poll(request: Request) -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(POLL_S)

    async def wait(request: Request) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    run = poll if way == "poll" else wait
    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    requests = [asyncio.ensure_future(run(Request(scope, receive))) for _ in range(open_requests)]
    await asyncio.sleep(0.5)
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    gone.set()
    await asyncio.gather(*requests, return_exceptions=True)
    return share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, nargs="+", default=[100, 1024], help="open requests")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds measured for each case")
    parser.add_argument("--part", choices=["vllm", "front"], default="vllm", help="which watching to measure")
    args = parser.parse_args()
    measure, (old, new) = (
        (_measure, ("per-request", "sweeper")) if args.part == "vllm" else (_measure_front, ("poll", "receive"))
    )
    rows = []
    for n in args.open:
        shares = {way: asyncio.run(measure(n, way, args.seconds)) for way in (old, new)}
        rows.append({"open_requests": n, "core_share": shares, "ratio": shares[old] / max(shares[new], 1e-9)})
    out = {"part": args.part, "python": platform.python_version(), "poll_s": POLL_S, "rows": rows}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
