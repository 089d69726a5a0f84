"""Run the demo's stages in two lanes (one process and one torch thread each), cache every finished stage,
and write the report for whatever exists.

``OUT/stages/<stage>.json`` holds a finished stage's result and the config it was computed with: a rerun with
the same config (the demo's, and the library configs the stage derives from it) reuses it, a changed config
reruns that stage from scratch, and an interrupted stage resumes from its training checkpoints in
``OUT/runs/<stage>``. A stage that raises is recorded in ``OUT/stages/<stage>.failed.json`` and named at the
end; the other stages go on, and the report covers what finished.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing as mp
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperadapt.config import to_dict
from hyperadapt.demo.config import DemoConfig
from hyperadapt.demo.stages import LANES, STAGE_CONFIGS, STAGES
from hyperadapt.io import load_json, save_json
from hyperadapt.runs import is_run

if TYPE_CHECKING:
    from multiprocessing.synchronize import RLock

    from tqdm.auto import tqdm as Bar

NOT_IN_KEY = ("out", "save_every", "quick", "checkpoint")  # settings that do not change a trained stage's numbers
DERIVED_NOT_IN_KEY = ("save_every",)  # where the derived configs carry one of them (every train section)


def stage_key(cfg: DemoConfig, name: str) -> str:
    """A hash of every setting that changes stage ``name``'s numbers: the demo config's, the library configs
    the stage derives from it (``STAGE_CONFIGS``: a changed library default reruns the stage), and for the
    checkpoint stage whether the released checkpoint is there (one that appears later is used by the next run)."""
    data = {k: v for k, v in to_dict(cfg).items() if k not in NOT_IN_KEY}
    if name in STAGE_CONFIGS:
        derived = {part: to_dict(c) for part, c in STAGE_CONFIGS[name](cfg).items()}
        data["derived"] = _without(derived, DERIVED_NOT_IN_KEY)
    if name == "checkpoint":
        data.update(checkpoint=cfg.checkpoint, present=is_run(cfg.checkpoint))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _without(data: object, keys: tuple[str, ...]) -> object:
    """``data`` with the dict keys ``keys`` removed at every depth."""
    if isinstance(data, dict):
        return {k: _without(v, keys) for k, v in data.items() if k not in keys}
    return data


def stage_file(out: Path, name: str) -> Path:
    return out / "stages" / f"{name}.json"


def failure_file(out: Path, name: str) -> Path:
    return out / "stages" / f"{name}.failed.json"


def cached(out: Path, name: str, key: str) -> dict[str, Any] | None:
    """The finished stage ``name`` computed under ``key``, else None."""
    path = stage_file(out, name)
    if not path.exists():
        return None
    data = load_json(path, "stage file")
    return data if data.get("key") == key else None


def run_stage(cfg: DemoConfig, name: str, log: Callable[[str], object] = print) -> bool:
    """Run one stage (unless cached) and record its result or its failure; True when it finished."""
    out, key = Path(cfg.out), stage_key(cfg, name)
    if cached(out, name, key) is not None:
        return True
    run_dir = out / "runs" / name
    marker = run_dir / "key.txt"
    if run_dir.exists() and (not marker.exists() or marker.read_text() != key):
        shutil.rmtree(run_dir)  # trained under another budget: start again
    run_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    failure_file(out, name).unlink(missing_ok=True)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        result = STAGES[name](cfg, run_dir)
    except Exception as err:  # noqa: BLE001 - any failure is recorded, named, and the other stages go on
        save_json(
            {"stage": name, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()},
            failure_file(out, name),
        )
        log(f"✗ {name} failed after {time.perf_counter() - start:.0f} s: {type(err).__name__}: {err}")
        return False
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    save_json(
        {"stage": name, "key": key, "seconds": seconds, "cpu_seconds": cpu, "result": result}, stage_file(out, name)
    )
    log(f"✓ {name} finished in {seconds:.0f} s ({cpu:.0f} s of CPU)")
    return True


def _lane_bars(position: int, stage: list[str]) -> Callable[..., Bar[Any]]:
    """tqdm for one lane: its own terminal line, the stage's name in front, cleared when done."""
    from tqdm.auto import tqdm

    def bar(*args: Any, **kwargs: Any) -> Bar[Any]:
        kwargs.update(position=position, leave=False, dynamic_ncols=True)
        kwargs["desc"] = f"[{stage[0]}] {kwargs.get('desc') or ''}"
        return tqdm(*args, **kwargs)

    return bar


def run_lane(cfg_dict: dict[str, Any], names: list[str], position: int, lock: RLock | None = None) -> None:
    """One lane in its own process: one torch thread, progress bars on line ``position``."""
    import torch
    from tqdm.auto import tqdm

    import hyperadapt.evaluation.harness as harness
    import hyperadapt.training as training
    from hyperadapt.config import from_dict

    torch.set_num_threads(1)
    if lock is not None:
        tqdm.set_lock(lock)
    cfg = from_dict(DemoConfig, cfg_dict)
    current = [""]
    bars = _lane_bars(position, current)
    for module in (harness, training):
        vars(module)["tqdm"] = bars  # the progress bars the harness and the training loop open
    for name in names:
        current[0] = name
        run_stage(cfg, name, log=functools.partial(tqdm.write))


def pending(cfg: DemoConfig) -> list[list[str]]:
    """Per lane, the stages that have no cached result under the current config."""
    out = Path(cfg.out)
    return [[n for n in lane if cached(out, n, stage_key(cfg, n)) is None] for lane in LANES]


def run_stages(cfg: DemoConfig) -> None:
    """Run every pending stage, each lane in its own process with one torch thread (so a stage computes
    the same numbers whichever other stages run, or resume, beside it)."""
    lanes = [lane for lane in pending(cfg) if lane]
    if not lanes:
        return
    from tqdm.auto import tqdm

    ctx = mp.get_context("spawn")  # torch and fork do not mix
    lock = ctx.RLock()  # one lock for every progress bar of both lanes
    tqdm.set_lock(lock)
    procs = [
        ctx.Process(target=run_lane, args=(to_dict(cfg), lane, i, lock), name=f"demo-lane-{i}")
        for i, lane in enumerate(lanes)
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise


def collect(cfg: DemoConfig) -> tuple[dict[str, Any], dict[str, str], dict[str, dict[str, Any]]]:
    """(results per finished stage, error per failed stage, wall and CPU seconds per finished stage)."""
    out = Path(cfg.out)
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    seconds: dict[str, dict[str, Any]] = {}
    for name in STAGES:
        data = cached(out, name, stage_key(cfg, name))
        if data is not None:
            results[name] = data["result"]
            seconds[name] = {"wall_s": data["seconds"], "cpu_s": data.get("cpu_seconds")}
        elif failure_file(out, name).exists():
            failed[name] = load_json(failure_file(out, name), "failure file")["error"]
    return results, failed, seconds
