"""CPU cost of watching open requests for cancellation in the vLLM engine's event loop, two ways side by side.

``per-request``: each open request polls its own flag every 0.1 s (``asyncio.wait(..., timeout=0.1)``), as
``VllmEngine._run`` did before 2026-12-08; ``sweeper``: one task checks every open request every 0.1 s
(``VllmEngine._sweep``). The answers are stand-ins that never finish (``asyncio.sleep``), so only the watching
costs CPU. Prints JSON: the share of one core each way uses, per number of open requests.

    python scripts/cancel_watch_cost.py --open 100 1024 --seconds 5
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, nargs="+", default=[100, 1024], help="open requests")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds measured for each case")
    args = parser.parse_args()
    rows = []
    for n in args.open:
        shares = {way: asyncio.run(_measure(n, way, args.seconds)) for way in ("per-request", "sweeper")}
        rows.append({"open_requests": n, "core_share": shares, "ratio": shares["per-request"] / shares["sweeper"]})
    print(json.dumps({"python": platform.python_version(), "poll_s": POLL_S, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
