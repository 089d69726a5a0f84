"""The ``hyperadapt`` command line: thin wrappers that parse options and call the library."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    help="Condition a frozen LLM on a textual instruction, domain, persona or style.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(soft_wrap=True)


def _fail(err: Exception) -> None:
    console.print(f"[red]error:[/] {err}")
    raise typer.Exit(code=2)


@app.command()
def info() -> None:
    """Versions, device, and whether the default model is installed.

    Example: hyperadapt info
    """
    import torch

    from hyperadapt.models import INSTALL_DEFAULT_MODEL, default_model_dir, default_model_installed, pick_device

    for pkg in ("hyperadapt", "torch", "transformers", "peft", "safetensors"):
        try:
            console.print(f"{pkg:14s} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            console.print(f"{pkg:14s} [red]not installed[/]")
    console.print(f"{'python':14s} {platform.python_version()}")
    dev = pick_device()
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else platform.processor() or "cpu"
    console.print(f"{'device':14s} {dev} ({name}), {torch.get_num_threads()} threads")
    cached = (default_model_dir() / "config.json").exists()
    if default_model_installed():
        state = f"installed; cache {'at ' + str(default_model_dir()) if cached else 'not built yet (first load)'}"
    else:
        state = f"[red]missing[/]: {INSTALL_DEFAULT_MODEL}"
    console.print(f"{'default model':14s} {state}")


@app.command("eval")
def eval_cmd(
    method: Annotated[str, typer.Option(help="zero-shot, multitask-lora, ...")] = "zero-shot",
    run: Annotated[Path | None, typer.Option(help="run directory of a trained method")] = None,
    model: Annotated[str, typer.Option(help="default, a HF id, a folder or a .gguf file")] = "default",
    data: Annotated[str, typer.Option(help="synthetic, sni:PATH, cl:PATH, jsonl:PATH, hf:NAME")] = "synthetic",
    split: Annotated[str, typer.Option(help="which tasks: e.g. seen/unseen (synthetic), test (sni)")] = "seen",
    setting: Annotated[str | None, typer.Option(help="def, def2pos or none (default: the method's)")] = None,
    limit: Annotated[int | None, typer.Option(help="first N instances per task")] = None,
    batch_size: Annotated[int, typer.Option(help="examples per generation batch")] = 32,
    max_new_tokens: Annotated[int, typer.Option(help="longest answer in tokens")] = 32,
    mode: Annotated[str, typer.Option(help="generate, or rank (classification over Task.options)")] = "generate",
    out: Annotated[Path, typer.Option(help="results JSON file or folder")] = Path("results"),
) -> None:
    """Evaluate a method on a task set and write results JSON + a Markdown table.

    Example: hyperadapt eval --method zero-shot --data sni:../shared/data/sni --split test --setting def --limit 20
    """
    from hyperadapt.data import load_tasks
    from hyperadapt.evaluation.harness import EvalConfig, evaluate, write_results
    from hyperadapt.methods import LOADABLE, PROMPT_ONLY, check_method

    try:
        check_method(method)
        cfg = EvalConfig(setting=setting, limit=limit, batch_size=batch_size, max_new_tokens=max_new_tokens,
                         mode=mode)
        tasks = load_tasks(data, split)
        if method in PROMPT_ONLY:
            runner = PROMPT_ONLY[method](model=model, setting=setting or "def")
        elif run is None:
            raise ValueError(f"--method {method} needs --run RUN_DIR (train it with: hyperadapt train {method})")
        else:
            runner = LOADABLE[method](run)
    except (ValueError, FileNotFoundError) as err:
        _fail(err)
    result = evaluate(runner, tasks, cfg, model=model, data=data, split=split)
    path = write_results(result, out if out.suffix == ".json" else out / f"{method}.{split}.json")
    m = result["mean"]
    console.print(f"{method} on {data} [{split}, {result['setting']}]: {len(tasks)} tasks, "
                  f"ROUGE-L {m['rougeL']:.2f}, EM {m['em']:.2f} -> {path}")


@app.command()
def train(
    method: Annotated[str, typer.Argument(help="what to train, e.g. multitask-lora")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value config overrides")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config (see configs/)")] = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/METHOD)")] = None,
    resume: Annotated[bool, typer.Option(help="continue from the run's last checkpoint")] = True,
) -> None:
    """Train a method into a run directory (resumable; checkpoints are written atomically).

    Example: hyperadapt train multitask-lora --config configs/multitask_lora.yaml train.steps=100
    """
    from hyperadapt import distributed
    from hyperadapt.config import load_config
    from hyperadapt.methods import TRAINABLE

    distributed.device()  # under accelerate launch: join the process group and take this process's GPU
    if method not in TRAINABLE:
        _fail(ValueError(f"cannot train {method!r}: trainable methods are {', '.join(sorted(TRAINABLE))}"))
    cfg_cls, train_fn = TRAINABLE[method]
    try:
        cfg = load_config(cfg_cls, config, overrides or [])
    except (ValueError, FileNotFoundError, TypeError) as err:
        _fail(err)
    run_dir = out or Path("runs") / method
    try:
        train_fn(cfg, run_dir, resume=resume)
    except (ValueError, FileNotFoundError) as err:
        _fail(err)
    console.print(f"trained {method} -> {run_dir}")


@app.command()
def demo(
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. steps=50")] = None,
) -> None:
    """Run the main job on the embedded defaults and print the results table.

    Zero-shot vs a multi-task LoRA on the synthetic suite's seen and unseen tasks, with the default model.
    Example: hyperadapt demo steps=100 limit=5
    """
    from hyperadapt.config import apply_overrides, from_dict
    from hyperadapt.demo import DemoConfig, run_demo

    try:
        cfg = from_dict(DemoConfig, apply_overrides({}, overrides or []))
    except (ValueError, TypeError) as err:
        _fail(err)
    run_demo(cfg, console)


@app.command()
def adapter(
    run: Annotated[Path, typer.Argument(help="a trained TAGI (or Hypter) run directory")],
    instruction: Annotated[str, typer.Option(help="the task instruction to turn into an adapter")],
    out: Annotated[Path, typer.Option(help="folder for the PEFT adapter")],
) -> None:
    """Generate a LoRA adapter from an instruction with a trained TAGI hypernetwork; write it as PEFT.

    The folder loads with peft.PeftModel.from_pretrained(base_model, OUT).
    Example: hyperadapt adapter runs/tagi --instruction "Reverse the list." --out adapters/reverse
    """
    from hyperadapt.methods.tagi import export_adapter

    try:
        path = export_adapter(run, instruction, out)
    except (ValueError, FileNotFoundError) as err:
        _fail(err)
    console.print(f"adapter written to {path}")


continual_app = typer.Typer(help="Continual instruction tuning: SwitchCIT and its baselines over a task stream.")
app.add_typer(continual_app, name="continual")


@continual_app.callback(invoke_without_command=True)
def continual(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(help="YAML config (see configs/switch_*.yaml)")] = None,
    method: Annotated[str, typer.Option(help="switchcit, sequential, replay, olora, multitask, oracle")] = "switchcit",
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/continual/METHOD)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="key=value config override (repeatable)")] = None,
    resume: Annotated[bool, typer.Option(help="continue after the last finished task")] = True,
) -> None:
    """Run a whole task stream: train task 1, evaluate all tasks, train task 2, ... (resumable after any task).

    Example: hyperadapt continual --config configs/switch_synthetic.yaml --method switchcit --out runs/cl/switchcit
    """
    if ctx.invoked_subcommand is not None:
        return
    from hyperadapt import distributed
    from hyperadapt.config import load_config
    from hyperadapt.methods.switch import METHODS, SwitchConfig, run_stream

    distributed.device()  # under accelerate launch: join the process group and take this process's GPU
    try:
        if method not in METHODS:
            raise ValueError(f"unknown continual method {method!r}: use one of {', '.join(METHODS)}")
        cfg = load_config(SwitchConfig, config, set_ or [])
    except (ValueError, FileNotFoundError, TypeError) as err:
        _fail(err)
    run_dir = out or Path("runs") / "continual" / method
    result = run_stream(cfg, run_dir, resume=resume, method=method)
    metrics = result["metrics"]
    console.print(f"{method}: AP {_fmt(metrics['AP'])}, BWT {_fmt(metrics['BWT'])}, "
                  f"forgetting {_fmt(metrics['Forgetting'])} -> {run_dir}")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


@continual_app.command("add")
def continual_add(
    run: Annotated[Path, typer.Argument(help="a finished switchcit (or oracle) run directory")],
    task: Annotated[str, typer.Option(help="task folder, SNI .json file, jsonl:PATH or synthetic:NAME")],
) -> None:
    """Add one more task to a continual run without touching the earlier adapters.

    Example: hyperadapt continual add runs/cl/switchcit --task synthetic:plural
    """
    from hyperadapt.methods.switch import add_task, load_task_spec

    try:
        train_task, test_task = load_task_spec(task)
        add_task(run, train_task, test_task)
    except (ValueError, FileNotFoundError) as err:
        _fail(err)
    console.print(f"added {train_task.name} to {run}")


@app.command()
def generate(
    run: Annotated[Path, typer.Argument(help="a trained run directory (switchcit, megan, tagi, ...)")],
    input_: Annotated[list[str], typer.Option("--input", help="an input text (repeatable)")],
    condition: Annotated[list[str] | None, typer.Option(help="condition/instruction: one, or one per input")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="longest answer in tokens")] = 64,
) -> None:
    """Answer inputs with a trained run: SwitchCIT routes each input; other methods take --condition.

    Example: hyperadapt generate runs/megan --condition "Answer in upper case." --input "paris"
    """
    from hyperadapt.evaluation.generate_cli import answer_inputs

    try:
        rows = answer_inputs(run, input_, condition or [], max_new_tokens)
    except (ValueError, FileNotFoundError) as err:
        _fail(err)
    for text, answer, route in rows:
        console.print(f"[bold]{text}[/]{f' [{route}]' if route else ''} -> {answer}")


@app.command()
def serve(
    runs: Annotated[list[str] | None, typer.Argument(help="TAGI/MeGan/SwitchCIT runs: PATH or NAME=PATH")] = None,
    model: Annotated[str | None, typer.Option(help="base model (default: the runs' own)")] = None,
    lora_modules: Annotated[list[str] | None, typer.Option(help="NAME=PEFT_DIR (repeatable)")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    api_key: Annotated[str | None, typer.Option(envvar="HYPERADAPT_API_KEY", help="require this bearer token")] = None,
    max_batch: Annotated[int, typer.Option(help="most sequences decoded together")] = 32,
    gather_ms: Annotated[float, typer.Option(help="how long an idle server waits to fill a batch")] = 5.0,
    cache_mb: Annotated[float, typer.Option(help="memory for generated adapters and β, per condition (LRU)")] = 512.0,
    max_tokens: Annotated[int, typer.Option(help="largest max_tokens a request may ask for")] = 512,
    max_prompt_tokens: Annotated[int, typer.Option(help="longest prompt in tokens")] = 2048,
    max_lora_rank: Annotated[int, typer.Option(help="largest rank of exported adapters (vLLM's)")] = 16,
    allow_runtime_lora: Annotated[bool, typer.Option(help="allow /v1/load_lora_adapter and unload")] = True,
) -> None:
    """Serve runs over an OpenAI-compatible HTTP API; the request's model field picks the run or adapter.

    Example: hyperadapt serve runs/tagi runs/megan cl=runs/cl/switchcit --port 8000
    """
    import uvicorn

    from hyperadapt.serve import ServeConfig, build_server, create_app

    try:
        cfg = ServeConfig(max_batch=max_batch, gather_ms=gather_ms, cache_mb=cache_mb, max_tokens=max_tokens,
                          max_prompt_tokens=max_prompt_tokens, max_lora_rank=max_lora_rank,
                          allow_runtime_lora=allow_runtime_lora, api_key=api_key)
        server = build_server(runs or [], cfg, adapters=lora_modules or [], model=model)
    except (ValueError, FileNotFoundError) as err:
        _fail(err)
    console.print(f"serving {', '.join(server.targets)} on http://{host}:{port}/v1")
    uvicorn.run(create_app(server), host=host, port=port, log_level="info")


BENCHMARKS = ("core", "tagi", "megan", "continual")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help=f"which benchmark: {', '.join(BENCHMARKS)}")],
) -> None:
    """Run a benchmark from the repository's benchmarks/ folder (extra options are passed on; see --help there).

    Example: hyperadapt bench core --batch-sizes 1 8 32 --seq 128 --out results/bench_core.json
    """
    import runpy
    import sys

    if name not in BENCHMARKS:
        _fail(ValueError(f"unknown benchmark {name!r}: use one of {', '.join(BENCHMARKS)}"))
    script = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    if not script.exists():
        _fail(FileNotFoundError(f"{script} not found: benchmarks run from a source checkout of hyperadapt"))
    sys.argv = [f"hyperadapt bench {name}", *ctx.args]
    sys.path.insert(0, str(script.parents[1]))
    runpy.run_path(str(script), run_name="__main__")


def main() -> None:  # pragma: no cover
    app()
