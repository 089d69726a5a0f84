"""``hyperadapt eval``: score a method or a run on a task set; results go where evaluation/destination.py says."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from hyperadapt.cli._errors import console, error_line
from hyperadapt.cli._options import MaxNewTokensOption, MaxPromptTokensOption, ModelOption


def eval_cmd(
    method: Annotated[
        str | None, typer.Option(help="zero-shot (default without --run); with --run the run's own method")
    ] = None,
    run: Annotated[
        Path | None, typer.Option(help="run directory: a trained method, a released checkpoint or a SwitchCIT run")
    ] = None,
    model: ModelOption = None,
    data: Annotated[str, typer.Option(help="synthetic, sni:PATH, cl:PATH, jsonl:PATH, hf:NAME")] = "synthetic",
    split: Annotated[str, typer.Option(help="which tasks: e.g. seen/unseen (synthetic), test (sni)")] = "seen",
    setting: Annotated[str | None, typer.Option(help="def, def2pos or none (default: the method's)")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="first N instances per task")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="examples per generation batch")] = 32,
    max_new_tokens: MaxNewTokensOption = 32,
    mode: Annotated[str, typer.Option(help="generate, or rank (classification over Task.options)")] = "generate",
    max_prompt_tokens: MaxPromptTokensOption = None,
    metric_lang: Annotated[
        str,
        typer.Option(
            help="ROUGE tokenizer: en (official English), xlingual (official cross-lingual), or auto "
            "(xlingual for tasks whose output language is not English)"
        ),
    ] = "auto",
    out: Annotated[
        Path | None,
        typer.Option(
            help="results JSON file or folder (default: RUN/eval/ with --run, else results/; the file name says the "
            "data source, split, setting and limit, and without --run the method and model)"
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="replace results of another evaluation at the same path (refused otherwise)")
    ] = False,
    instructions: Annotated[
        str,
        typer.Option(
            help="own: each task's instruction; shuffled: another task's (and its examples); random: random words "
            "of the same lengths. The last two are TAGI's instruction-sensitivity controls; the results say which"
        ),
    ] = "own",
    instructions_seed: Annotated[
        int, typer.Option(help="seed of the shuffled or random instructions (bench tagi uses the run's train.seed)")
    ] = 0,
) -> None:
    """Evaluate a method on a task set and write results JSON + a Markdown table.

    With --run, the run directory says what it holds (any trained method, a released checkpoint or a
    SwitchCIT run) and its results go into RUN/eval/DATA.SPLIT.SETTING[.limitN].json unless --out says
    otherwise (DATA: the source and a short hash of its folder). Answers are appended to RESULTS.answers.jsonl
    as they come: an interrupted evaluation continues where it stopped when the same command runs again. The
    headline is the official SNI instance mean.

    With --instructions shuffled (or random) every task reads another task's instruction (random words): does the
    method follow the instruction it is given? The file name says so (.shuffled-seed0.) and the results record it.

    Examples: hyperadapt eval --data sni:../shared/data/sni --split test --setting def --limit 20  (zero-shot)
              hyperadapt eval --run runs/tagi --data synthetic --split unseen
              hyperadapt eval --run runs/tagi --data synthetic --split unseen --instructions shuffled
    """
    from hyperadapt.data import load_tasks
    from hyperadapt.errors import UserError
    from hyperadapt.evaluation.destination import check_results_target, expected_identity, results_path
    from hyperadapt.evaluation.harness import EvalConfig, evaluate
    from hyperadapt.io import check_out_file
    from hyperadapt.methods.tagi.instructions import INSTRUCTION_VARIANTS, with_instructions
    from hyperadapt.models import load_base_model
    from hyperadapt.registry import method_entry
    from hyperadapt.runs import Run

    if instructions not in INSTRUCTION_VARIANTS:
        raise UserError(f"--instructions must be one of {', '.join(INSTRUCTION_VARIANTS)}, got {instructions!r}")
    variant = None if instructions == "own" else f"{instructions}-seed{instructions_seed}"  # names and records it

    opened = Run.open(run) if run is not None else None  # its record, read once
    if opened is not None:
        if method is not None and method != opened.method:
            raise UserError(
                f"--method {method} does not match --run {run}, which holds a {opened.method!r} run: leave --method out"
            )
        method = opened.method
        opened.check_loadable()  # says why a run cannot be evaluated, before any data loads
    method = method or "zero-shot"
    entry = method_entry(method)
    if entry.make is not None and opened is not None:
        raise UserError(f"--method {method} takes no --run (it evaluates --model as it is)")
    if entry.make is None and opened is None:
        raise UserError(f"--method {method} needs --run RUN_DIR (train it with: hyperadapt train {method})")
    cfg = EvalConfig(
        setting=setting,
        limit=limit,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        mode=mode,
        max_prompt_tokens=max_prompt_tokens,
        metric_lang=metric_lang,
    )
    given_model = model  # a run loads --model when given (its weights checked against the run's), else its own
    model = opened.check_model(model) if opened is not None else model or "default"
    own = opened.prompt_style.setting if opened is not None else "def"
    target = results_path(
        out, data, split, setting or own, limit, method=method, model=model, run=opened, instructions=variant
    )
    check_out_file(target, "--out")
    tasks = with_instructions(load_tasks(data, split), instructions, instructions_seed)
    if opened is not None:
        runner = opened.load(None if given_model is None else load_base_model(model))
        if setting is not None and setting != own:
            warnings.warn(
                f"{run} was trained on prompts of setting {own!r}; --setting {setting} evaluates it on "
                "other prompts, so its scores are not its own (leave --setting out to use the run's)",
                stacklevel=2,
            )
    elif entry.make is not None:  # always, without a run: a method without make was refused above
        runner = entry.make(model=model, setting=setting or own)
    # a run's model is the weights its fingerprint names, by whatever path --model gave them
    weights = (
        f"weights-{opened.base_model.fingerprint}" if opened is not None and opened.base_model.comparable else None
    )
    expected = expected_identity(
        runner, cfg, model=model, data=data, split=split, instructions=variant, model_tag=weights
    )
    check_results_target(target, expected, overwrite)
    answers = target.with_suffix(".answers.jsonl")
    result = evaluate(runner, tasks, cfg, model=model, data=data, split=split, answers_path=answers)
    if weights is not None:
        result["sources"]["model"] = weights
    if variant is not None:
        result["instructions"] = variant
    path = _write_results(result, target)
    answers.unlink(missing_ok=True)  # the answers are in the results now; a later run starts afresh
    m = result["mean"]
    console.print(
        f"{method} on {data} [{split}, {result['setting']}{f', {variant} instructions' if variant else ''}]: "
        f"{len(tasks)} tasks, {m['n']} instances, "
        f"ROUGE-L {m['rougeL']:.2f}, EM {m['em']:.2f} (instance mean; task mean ROUGE-L "
        f"{m['task_mean']['rougeL']:.2f}) -> {path}"
    )


def _write_results(result: dict[str, Any], path: Path) -> Path:
    """Write the results; if that fails after the work is done, save them in the temp folder instead and
    say where (finished work is never lost to an output error)."""
    import tempfile

    from hyperadapt.evaluation.harness import write_results

    try:
        return write_results(result, path)
    except OSError as err:
        rescue = write_results(result, Path(tempfile.mkdtemp(prefix="hyperadapt-")) / path.name)
        raise OSError(f"could not write {path} ({error_line(err)}); the results were saved to {rescue}") from err
