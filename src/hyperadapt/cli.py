"""The ``hyperadapt`` command line: thin wrappers that parse options and call the library."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from hyperadapt.benchmarks import BENCHMARKS
from hyperadapt.config import OVERRIDE_HELP
from hyperadapt.io import check_out_dir, check_out_file, load_json, safe_name
from hyperadapt.runs import RunLocked

# Markup is off: user text, answers, task names and routes are printed exactly as given.
console = Console(soft_wrap=True, markup=False, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
# ValueError covers TaskDataError and JSON errors; RunLocked: another process is training into the run
USER_ERRORS = (ValueError, OSError, yaml.YAMLError, RunLocked)
SHUTDOWN_GRACE_S = 10  # seconds an open request gets to finish after SIGTERM (serve)
# typer parses with its own copy of click: take its exception types from there
click_errors = sys.modules[typer.BadParameter.__module__]


def error_line(err: BaseException) -> str:
    """One line that says what is wrong: the message of ``err`` with its lines joined."""
    if isinstance(err, OSError) and err.strerror and err.filename:
        message = f"{err.filename}: {err.strerror}"
    elif isinstance(err, click_errors.ClickException):
        message = err.format_message()
    else:
        message = str(err) or type(err).__name__
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def _fail(err: BaseException) -> None:
    err_console.print(Text.assemble(("error:", "red"), " ", error_line(err)))
    raise typer.Exit(code=2)


class ErrorGroup(TyperGroup):
    """Runs every command; a user's mistake (bad value, missing or unreadable file, malformed YAML or
    task data, bad option) ends as one ``error: ...`` line and exit code 2; other exceptions are bugs and
    keep their traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except click_errors.NoArgsIsHelpError:
            raise
        except click_errors.UsageError as err:
            name = err.ctx.command_path if err.ctx is not None else "hyperadapt"
            _fail(ValueError(f"{error_line(err)} (see: {name} --help)"))
        except USER_ERRORS as err:
            _fail(err)
        except ImportError as err:  # an optional package is missing: our messages say what to install
            if "pip install" not in str(err):
                raise
            _fail(err)


# One override syntax for every command that reads a config (train, demo, continual and the benchmarks).
SetOption = Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help=OVERRIDE_HELP)]
# Commands with a config take extra arguments only to refuse bare KEY=VALUE ones, saying how overrides are written.
TAKES_STRAY = {"allow_extra_args": True}


def no_stray_overrides(stray: list[str]) -> None:
    """Refuse bare ``key=value`` arguments (the old override syntax), naming the ``--set`` form."""
    if stray:
        fixed = " ".join(f"--set {s}" if "=" in s else s for s in stray)
        raise ValueError(f"unexpected argument(s) {' '.join(stray)}: config overrides are written --set KEY=VALUE "
                         f"({fixed})")


class StrayOverridesGroup(TyperGroup):
    """A command group with a config of its own (``continual``): a bare ``key=value`` where a subcommand's name
    would go is refused as a stray override (``no_stray_overrides``), not as an unknown command."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and "=" in args[0] and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            stray = []
            for arg in args:
                if "=" not in arg or arg.startswith("-"):
                    break
                stray.append(arg)
            no_stray_overrides(stray)
        return super().resolve_command(ctx, args)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Our own warnings (renamed keys, cut prompts) as one ``warning:`` line, without the source line."""
    return f"warning: {message}\n"


warnings.formatwarning = _one_line_warning

app = typer.Typer(
    cls=ErrorGroup,
    help="Condition a frozen LLM on a textual instruction, domain, persona or style.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def info() -> None:
    """Versions, device, and whether the default model and the sentence encoder are installed.

    Example: hyperadapt info
    """
    import torch

    from hyperadapt.models import INSTALL_DEFAULT_MODEL, default_model_dir, default_model_installed, pick_device

    for pkg in ("hyperadapt", "torch", "transformers", "peft", "safetensors"):
        try:
            console.print(f"{pkg:14s} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            console.print(f"{pkg:14s} not installed", style="red")
    console.print(f"{'python':14s} {platform.python_version()}")
    dev = pick_device()
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else platform.processor() or "cpu"
    console.print(f"{'device':14s} {dev} ({name}), {torch.get_num_threads()} threads")
    cached = (default_model_dir() / "config.json").exists()
    if default_model_installed():
        state = f"installed; cache {'at ' + str(default_model_dir()) if cached else 'not built yet (first load)'}"
    else:
        state = f"missing: {INSTALL_DEFAULT_MODEL}"
    console.print(f"{'default model':14s} {state}")
    from hyperadapt.encoders import sentence_encoder_dir

    try:
        encoder = f"installed at {sentence_encoder_dir()} (TAGI's encoder: sentence, SwitchCIT's switch)"
    except FileNotFoundError as err:
        encoder = f"missing: {err}"
    console.print(f"{'sentence enc.':14s} {encoder}", markup=False)


@app.command("eval")
def eval_cmd(
    method: Annotated[str | None, typer.Option(
        help="zero-shot (default without --run); with --run the run's own method")] = None,
    run: Annotated[Path | None, typer.Option(
        help="run directory: a trained method, a released checkpoint or a SwitchCIT run")] = None,
    model: Annotated[str | None, typer.Option(
        help="default, a HF id, a folder or a .gguf file (with --run: the run's own model)")] = None,
    data: Annotated[str, typer.Option(help="synthetic, sni:PATH, cl:PATH, jsonl:PATH, hf:NAME")] = "synthetic",
    split: Annotated[str, typer.Option(help="which tasks: e.g. seen/unseen (synthetic), test (sni)")] = "seen",
    setting: Annotated[str | None, typer.Option(help="def, def2pos or none (default: the method's)")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="first N instances per task")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="examples per generation batch")] = 32,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="longest answer in tokens")] = 32,
    mode: Annotated[str, typer.Option(help="generate, or rank (classification over Task.options)")] = "generate",
    max_prompt_tokens: Annotated[int | None, typer.Option(
        min=1, help="prompt budget; longer prompts lose their input's tail, then examples, then the definition's tail "
             "(default: the model's context minus --max-new-tokens)")] = None,
    metric_lang: Annotated[str, typer.Option(
        help="ROUGE tokenizer: en (official English), xlingual (official cross-lingual), or auto "
             "(xlingual for tasks whose output language is not English)")] = "auto",
    out: Annotated[Path | None, typer.Option(
        help="results JSON file or folder (default: RUN/eval/DATA-SPLIT-SETTING.json with --run, else results/)")]
        = None,
) -> None:
    """Evaluate a method on a task set and write results JSON + a Markdown table.

    With --run, the run directory says what it holds (any trained method, a released checkpoint or a
    SwitchCIT run) and its results go into RUN/eval/ unless --out says otherwise. Answers are appended to
    RESULTS.answers.jsonl as they come: an interrupted evaluation continues where it stopped when the same
    command runs again. The headline is the official SNI instance mean.

    Examples: hyperadapt eval --data sni:../shared/data/sni --split test --setting def --limit 20  (zero-shot)
              hyperadapt eval --run runs/tagi --data synthetic --split unseen
    """
    from hyperadapt.data import load_tasks
    from hyperadapt.evaluation.harness import EvalConfig, evaluate
    from hyperadapt.registry import method_entry
    from hyperadapt.runs import Run

    opened = Run.open(run) if run is not None else None  # its record, read once
    if opened is not None:
        if method is not None and method != opened.method:
            raise ValueError(f"--method {method} does not match --run {run}, which holds a {opened.method!r} run: "
                             "leave --method out")
        method = opened.method
        opened.check_loadable()  # says why a run cannot be evaluated, before any data loads
    method = method or "zero-shot"
    entry = method_entry(method)
    cfg = EvalConfig(setting=setting, limit=limit, batch_size=batch_size, max_new_tokens=max_new_tokens,
                     mode=mode, max_prompt_tokens=max_prompt_tokens, metric_lang=metric_lang)
    target = _results_path(out, run, method, data, split, setting)
    check_out_file(target, "--out")
    tasks = load_tasks(data, split)
    if entry.make is not None:
        if opened is not None:
            raise ValueError(f"--method {method} takes no --run (it evaluates --model as it is)")
        model = model or "default"
        runner = entry.make(model=model, setting=setting or "def")
    elif opened is None:
        raise ValueError(f"--method {method} needs --run RUN_DIR (train it with: hyperadapt train {method})")
    else:
        model = opened.check_model(model)
        runner = opened.load()
        trained = opened.prompt_style.setting
        if setting is not None and setting != trained:
            warnings.warn(f"{run} was trained on prompts of setting {trained!r}; --setting {setting} evaluates it on "
                          "other prompts, so its scores are not its own (leave --setting out to use the run's)",
                          stacklevel=2)
    answers = target.with_suffix(".answers.jsonl")
    result = evaluate(runner, tasks, cfg, model=model, data=data, split=split, answers_path=answers)
    path = _write_results(result, target)
    answers.unlink(missing_ok=True)  # the answers are in the results now; a later run starts afresh
    m = result["mean"]
    console.print(f"{method} on {data} [{split}, {result['setting']}]: {len(tasks)} tasks, {m['n']} instances, "
                  f"ROUGE-L {m['rougeL']:.2f}, EM {m['em']:.2f} (instance mean; task mean ROUGE-L "
                  f"{m['task_mean']['rougeL']:.2f}) -> {path}", markup=False)


def _results_path(out: Path | None, run: Path | None, method: str, data: str, split: str,
                  setting: str | None) -> Path:
    """Where ``eval`` writes: ``--out`` (a .json file, or a folder), else ``RUN/eval/DATA-SPLIT-SETTING.json``
    for a run (two runs of one method never overwrite each other), else ``results/METHOD.SPLIT.json``."""
    if out is not None and out.suffix == ".json":
        return out
    if out is None and run is not None:
        kind = data.split(":", 1)[0]  # sni:../shared/data/sni -> sni
        return run / "eval" / f"{safe_name(kind)}-{safe_name(split, 'split')}-{safe_name(setting or 'own')}.json"
    return (out or Path("results")) / f"{safe_name(method)}.{safe_name(split, 'split')}.json"


def _write_results(result: dict, path: Path) -> Path:
    """Write the results; if that fails after the work is done, save them in the temp folder instead and
    say where (finished work is never lost to an output error)."""
    import tempfile

    from hyperadapt.evaluation.harness import write_results

    try:
        return write_results(result, path)
    except OSError as err:
        rescue = write_results(result, Path(tempfile.mkdtemp(prefix="hyperadapt-")) / path.name)
        raise OSError(f"could not write {path} ({error_line(err)}); the results were saved to {rescue}") from err


@app.command(context_settings=TAKES_STRAY)
def train(
    ctx: typer.Context,
    method: Annotated[str, typer.Argument(help="what to train: a method's name, e.g. tagi, megan, hypter, "
                                               "multitask-lora (an unknown name lists them all)")],
    config: Annotated[Path | None, typer.Option(help="YAML config (see configs/)")] = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/METHOD)")] = None,
    resume: Annotated[bool, typer.Option(help="continue from the run's last checkpoint")] = True,
    set_: SetOption = None,
) -> None:
    """Train a method into a run directory (resumable; checkpoints are written atomically).

    Settings come from --config, then each --set KEY=VALUE (the override syntax of every command).
    Example: hyperadapt train multitask-lora --config configs/multitask_lora.yaml --set train.steps=100
    """
    from hyperadapt import distributed
    from hyperadapt.config import load_config
    from hyperadapt.registry import method_entry, method_names
    from hyperadapt.runs import RunDir, train_resume_command

    no_stray_overrides(ctx.args)
    distributed.device()  # under accelerate launch: join the process group and take this process's GPU
    trainable = method_names(kind="train")
    if method not in trainable:
        raise ValueError(f"cannot train {method!r}: trainable methods are {', '.join(trainable)}")
    entry = method_entry(method)
    cfg = load_config(entry.config_cls, config, set_ or [])
    run_dir = check_out_dir(out or Path("runs") / method, "--out")
    done_before = resume and RunDir(run_dir).is_finished()
    try:
        entry.train(cfg, run_dir, resume=resume)
    except KeyboardInterrupt:
        raise _interrupted(run_dir, train_resume_command(method, run_dir)) from None
    if done_before:
        console.print(f"{run_dir} already holds this finished {method} run: nothing to train "
                      "(--no-resume trains it again from the start)", markup=False)
    else:
        console.print(f"trained {method} -> {run_dir}", markup=False)


def _interrupted(run_dir: Path, resume: str, stream: str | None = None) -> typer.Exit:
    """Say in one line where an interrupted (Ctrl-C) run stands and how to resume it; exit code 130.
    ``stream``: how far a continual run got (``_stream_extent``); its task in progress is then described by
    its checkpoint or by the answers it had logged."""
    from hyperadapt.methods.continual.stream import ANSWERING
    from hyperadapt.runs import is_run, newest_checkpoint

    if not is_run(run_dir):
        err_console.print(f"interrupted before {run_dir} was started: nothing was saved")
        return typer.Exit(code=130)
    checkpoint = newest_checkpoint(run_dir)
    where = f"the last checkpoint is {checkpoint}" if checkpoint else "no checkpoint had been written yet"
    if stream is not None:
        logged = sum(max(0, len(f.read_text(encoding="utf-8").splitlines()) - 1)
                     for f in (run_dir / ANSWERING).glob("*.jsonl"))
        now = (f"its last checkpoint is {checkpoint}" if checkpoint else
               f"{logged} of its answers are logged" if logged else "nothing of it saved yet")
        where = f"{stream}; the task in progress: {now}"
    err_console.print(f"interrupted: {where}; resume with `{resume}`", markup=False)
    return typer.Exit(code=130)


@app.command(context_settings=TAKES_STRAY)
def demo(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option(help="a smoke-sized budget (about 5 minutes on 2 CPU cores)")] = False,
    out: Annotated[str | None, typer.Option(help="run folder (default results/demo, results/demo-quick)")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE", help="budget override (repeatable), the demo's own keys: --set train_steps=120 "
        "--set limit=10 (teacher_steps, stream_steps, megan_steps, seen_limit, stream_limit, model, seed, ...)",
    )] = None,
) -> None:
    """Show TAGI, SwitchCIT and MeGan against their baselines on the default model and the synthetic suite.

    Writes OUT/report.md, a self-contained OUT/report.html, figures, results.json and a generated PEFT adapter.
    Finished stages are cached in OUT: a rerun reuses them and an interrupted run resumes. The budget is
    set with --set KEY=VALUE (e.g. --set train_steps=120).
    Example: hyperadapt demo --quick
    """
    from hyperadapt.demo import demo_config, run_demo

    no_stray_overrides(ctx.args)
    cfg = demo_config(set_ or [], quick=quick, out=out)
    check_out_dir(cfg.out, "--out")
    code = run_demo(cfg, console)
    if code:
        raise typer.Exit(code=code)


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
    from hyperadapt.methods.tagi.method import check_adapter_out, export_adapter
    from hyperadapt.runs import Run

    check_adapter_out(out)
    if not instruction.strip():  # before loading anything
        raise ValueError("--instruction is empty: TAGI generates the adapter from the task's instruction")
    path = export_adapter(Run.open(run), instruction, out)
    console.print(f"adapter written to {path}")


@app.command()
def release(
    run: Annotated[Path, typer.Argument(help="a finished TAGI, Hypter or MeGan run directory")],
    out: Annotated[Path, typer.Option(help="checkpoint folder to write, e.g. checkpoints/NAME")],
    card: Annotated[Path | None, typer.Option(help="model card (Markdown) to ship as README.md")] = None,
    dtype: Annotated[str, typer.Option(help="bfloat16, float16 or float32")] = "bfloat16",
) -> None:
    """Write a trained hypernetwork as a small checkpoint (run.json, weights in bf16, model card).

    The checkpoint loads like the run: hyperadapt adapter CHECKPOINT --instruction ... --out DIR.
    Example: hyperadapt release runs/tagi --out checkpoints/tagi-demo --card card.md
    """
    from hyperadapt.release import check_release_out, checkpoint_bytes, release_checkpoint
    from hyperadapt.runs import Run

    check_release_out(run, out)
    text = card.read_text(encoding="utf-8") if card is not None else None
    path = release_checkpoint(Run.open(run), out, text, dtype)
    console.print(f"checkpoint written to {path} ({checkpoint_bytes(path) / 2**20:.1f} MiB)", markup=False)


continual_app = typer.Typer(cls=StrayOverridesGroup,
                            help="Continual instruction tuning: SwitchCIT and its baselines over a task stream.")
app.add_typer(continual_app, name="continual")


@continual_app.callback(invoke_without_command=True)
def continual(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(help="YAML config (see configs/switch_*.yaml)")] = None,
    method: Annotated[str, typer.Option(help="switchcit, sequential, replay, olora, multitask, oracle")] = "switchcit",
    out: Annotated[Path | None, typer.Option(help="run directory (default runs/continual/METHOD)")] = None,
    set_: SetOption = None,
    resume: Annotated[bool, typer.Option(
        help="continue after the last finished task; --no-resume deletes the run in --out and starts over")] = True,
) -> None:
    """Run a whole task stream: train task 1, evaluate all tasks, train task 2, ... (resumable after any task).

    Settings come from --config, then each --set KEY=VALUE (the override syntax of every command).
    Example: hyperadapt continual --config configs/switch_synthetic.yaml --method switchcit --out runs/cl/switchcit
    """
    if ctx.invoked_subcommand is not None:
        return
    from hyperadapt import distributed
    from hyperadapt.config import load_config
    from hyperadapt.methods.continual import learner_class, run_stream
    from hyperadapt.methods.switch import SwitchConfig
    from hyperadapt.runs import continual_resume_command

    distributed.device()  # under accelerate launch: join the process group and take this process's GPU
    learner_class(method)  # an unknown method is refused before anything is loaded
    cfg = load_config(SwitchConfig, config, set_ or [])  # one config for SwitchCIT and its baselines
    run_dir = check_out_dir(out or Path("runs") / "continual" / method, "--out")
    extent = None if resume else _stream_extent(run_dir, method)
    if extent:
        err_console.print(f"--no-resume: deleting the run in {run_dir} ({extent}) and starting over", markup=False)
    try:
        result = run_stream(cfg, run_dir, resume=resume, method=method)
    except KeyboardInterrupt:
        resume_with = continual_resume_command(method, run_dir)
        raise _interrupted(run_dir, resume_with, _stream_extent(run_dir, method)) from None
    metrics = result["metrics"]
    console.print(f"{method}: AP {_fmt(metrics['AP'])}, BWT {_fmt(metrics['BWT'])}, "
                  f"forgetting {_fmt(metrics['Forgetting'])} -> {run_dir}")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _stream_extent(run_dir: Path, method: str) -> str | None:
    """How far the ``method`` continual run in ``run_dir`` got, in words ("3 of 5 tasks done, 1 added"); None
    when ``run_dir`` holds no such run (``run_stream`` then says what it holds)."""
    from hyperadapt.methods.continual.runner import STATE, check_run_dir
    from hyperadapt.runs import RunDir

    try:
        run = check_run_dir(run_dir)
        done = load_json(run_dir / STATE, "run state")["completed"] if (run_dir / STATE).exists() else 0
    except (ValueError, KeyError, TypeError, FileNotFoundError):
        return None
    if run.method != method or RunDir(run_dir).owner() is not None:  # run_stream says why it stops
        return None
    added = len(run.record.get("added", []))
    return f"{done} of {len(run.tasks)} tasks done" + (f", {added} added" if added else "")


@continual_app.command("add")
def continual_add(
    run: Annotated[Path, typer.Argument(help="a finished switchcit (or oracle) run directory")],
    task: Annotated[str, typer.Option(help="task folder, SNI .json file, jsonl:PATH or synthetic:NAME")],
) -> None:
    """Add one more task to a continual run without touching the earlier adapters.

    Example: hyperadapt continual add runs/cl/switchcit --task synthetic:plural
    """
    from hyperadapt.methods.switch import add_task, load_task_spec

    train_task, test_task = load_task_spec(task)
    add_task(run, train_task, test_task)
    console.print(f"added {train_task.name} to {run}")


@app.command()
def generate(
    run: Annotated[Path, typer.Argument(help="a trained run directory (switchcit, megan, tagi, ...)")],
    input_: Annotated[list[str], typer.Option("--input", help="an input text (repeatable)")],
    condition: Annotated[list[str] | None, typer.Option(help="condition/instruction: one, or one per input")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="longest answer in tokens")] = 64,
    max_prompt_tokens: Annotated[int | None, typer.Option(
        min=1, help="longest prompt in tokens; longer ones lose the tail of their input first, as in eval "
                    "(default: the model's context minus --max-new-tokens)")] = None,
) -> None:
    """Answer inputs with a trained run: SwitchCIT routes each input; other methods take --condition.

    Example: hyperadapt generate runs/megan --condition "Answer in upper case." --input "paris"
    """
    from hyperadapt.methods.inputs import answer_inputs
    from hyperadapt.runs import Run

    rows = answer_inputs(Run.open(run), input_, condition or [], max_new_tokens, max_prompt_tokens)
    for text, answer, route in rows:
        console.print(Text.assemble((text, "bold"), f"  [{route}]" if route else "", " -> ", answer))


@app.command()
def serve(
    runs: Annotated[list[str] | None, typer.Argument(help="runs (any that eval --run loads): PATH or NAME=PATH")]
        = None,
    model: Annotated[str | None, typer.Option(help="base model (default: the runs' own)")] = None,
    lora_modules: Annotated[list[str] | None, typer.Option(help="NAME=PEFT_DIR (repeatable)")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8000,
    api_key: Annotated[str | None, typer.Option(envvar="HYPERADAPT_API_KEY", help="require this bearer token")] = None,
    max_batch: Annotated[int, typer.Option(help="most sequences decoded together")] = 32,
    gather_ms: Annotated[float, typer.Option(help="how long an idle server waits to fill a batch")] = 5.0,
    cache_mb: Annotated[float, typer.Option(help="memory for generated adapters and β, per condition (LRU)")] = 512.0,
    max_tokens: Annotated[int, typer.Option(help="largest max_tokens a request may ask for")] = 512,
    max_prompt_tokens: Annotated[int, typer.Option(help="longest prompt in tokens")] = 2048,
    max_lora_rank: Annotated[int, typer.Option(help="largest rank of exported adapters (vLLM's)")] = 16,
    allow_runtime_lora: Annotated[bool, typer.Option(help="allow /v1/load_lora_adapter and unload")] = True,
    engine: Annotated[str, typer.Option(help="own (hyperadapt's decoding loop) or vllm (a vLLM server answers; "
                                             "`make vllm` installs it)")] = "own",
    vllm_url: Annotated[str | None, typer.Option(help="with --engine vllm: a running vLLM server to use instead "
                                                      "of starting one (e.g. http://gpu-host:8000)")] = None,
    vllm_max_loras: Annotated[int, typer.Option(min=1, help="with --engine vllm: adapters in one vLLM batch")] = 8,
    vllm_adapters: Annotated[int, typer.Option(min=1, help="with --engine vllm: generated adapters kept on disk")]
        = 512,
) -> None:
    """Serve runs over an OpenAI-compatible HTTP API; the request's model field picks the run or adapter.

    Example: hyperadapt serve runs/tagi runs/megan cl=runs/cl/switchcit --port 8000
    """
    import uvicorn

    from hyperadapt.serve import ServeConfig, build_server, create_app

    cfg = ServeConfig(max_batch=max_batch, gather_ms=gather_ms, cache_mb=cache_mb, max_tokens=max_tokens,
                      max_prompt_tokens=max_prompt_tokens, max_lora_rank=max_lora_rank,
                      allow_runtime_lora=allow_runtime_lora, api_key=api_key)
    if engine not in ("own", "vllm"):
        raise typer.BadParameter(f"--engine is 'own' or 'vllm', not {engine!r}")
    if engine == "vllm" and vllm_url is None:
        from hyperadapt.vllm import vllm_python

        vllm_python()  # a missing `make vllm` is one line, before the model loads
    server = build_server(runs or [], cfg, adapters=lora_modules or [], model=model)
    if engine == "vllm":
        from hyperadapt.serve.vllm_engine import use_vllm, vllm_config

        use_vllm(server, None if vllm_url else vllm_config(server, max_lora_rank, vllm_max_loras), url=vllm_url,
                 max_adapters=vllm_adapters)
    console.print(f"serving {', '.join(server.targets)} on http://{host}:{port}/v1", markup=False)
    # a request still open at SIGTERM gets SHUTDOWN_GRACE_S to finish; then the engine ends it with a 503
    uvicorn.run(create_app(server), host=host, port=port, log_level="info", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)


BENCH_HELP = "\n\n".join([
    "Run benchmark NAME with its own options (`hyperadapt bench NAME --help` lists them).",
    "\n".join(f"{name}: {summary}" for name, summary in BENCHMARKS.items()),
    "NAME is the module hyperadapt.benchmarks.NAME (also `python -m hyperadapt.benchmarks.NAME`); each writes "
    "JSON (to results/ unless --out says otherwise). "
    "Example: hyperadapt bench core --batch-sizes 1 8 32 --seq 128 --out results/bench_core.json",
])


@app.command(help=BENCH_HELP, add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help=f"which benchmark: {', '.join(BENCHMARKS)}",
                                               show_default=False)] = None,
) -> None:
    import importlib

    if name is None or name == "--help":  # --help after NAME is the benchmark's own
        text = ctx.get_help()  # typer's rich help prints itself and returns ""
        if text:
            console.print(text)
        raise typer.Exit()
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}: use one of {', '.join(BENCHMARKS)}")
    status = importlib.import_module(f"hyperadapt.benchmarks.{name}").main(list(ctx.args))
    if isinstance(status, int) and status:
        raise typer.Exit(code=status)


def main() -> None:  # pragma: no cover
    app()
