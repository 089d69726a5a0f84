"""The demo's stages: each trains one method through its library entry point, scores it with the shared
harness, and returns a JSON-able dict (no wall times: those go to ``timings.json``, so that the same seed
gives the same report to the last digit).

A stage gets the demo config and its own folder (``OUT/runs/<stage>``, resumable: the Trainer checkpoints
every ``save_every`` steps). Stages do not depend on each other, except that ``sequential`` reuses the base
model's cached answers of ``switchcit`` when that stage has finished.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hyperadapt.config import to_dict
from hyperadapt.core import peft_wrapping
from hyperadapt.data import load_tasks
from hyperadapt.data.prompts import build_prompt, user_message
from hyperadapt.data.schema import Task
from hyperadapt.demo.config import DATA, DemoConfig
from hyperadapt.evaluation.generate import generate_batch
from hyperadapt.evaluation.harness import EvalConfig, Method, evaluate
from hyperadapt.models import load_base_model

EXAMPLES = 3  # predictions kept per score, to show in the report
ADAPTER_TASK = "title_case"  # the unseen task whose generated adapter is exported as a PEFT folder
BETA_TASKS = ("upper_case", "reverse_list", "antonym", "sentiment_movie")
STEER_TASKS = ("upper_case", "antonym", "reverse_list", "first_item", "plural")


def eval_config(cfg: DemoConfig, limit: int) -> EvalConfig:
    """How every stage scores a method: the first ``limit`` instances per task."""
    return EvalConfig(limit=limit, batch_size=cfg.eval_batch_size, max_new_tokens=cfg.max_new_tokens)


def score(method: Method, tasks: list[Task], limit: int, cfg: DemoConfig, split: str) -> dict[str, Any]:
    """Mean and per-task ROUGE-L / EM of ``method`` on ``tasks`` (first ``limit`` instances), a few answers."""
    res = evaluate(method, tasks, eval_config(cfg, limit), model=cfg.model, data=DATA, split=split)
    return {
        "mean": res["mean"],
        "n": len(res["predictions"]),
        "setting": res["setting"],
        "tasks": {k: {m: v[m] for m in ("rougeL", "em", "n")} for k, v in res["tasks"].items()},
        "examples": res["predictions"][:EXAMPLES],
    }


def _limits(cfg: DemoConfig) -> dict[str, int]:
    return {"seen": cfg.seen_limit, "unseen": cfg.limit}


def _splits(cfg: DemoConfig) -> dict[str, tuple[list[Task], int]]:
    return {split: (load_tasks(DATA, split), limit) for split, limit in _limits(cfg).items()}


def zero_shot_stage(cfg: DemoConfig, run_dir: Path) -> dict[str, Any]:
    """The frozen model with the instruction in its prompt, on seen and unseen tasks."""
    from hyperadapt.methods.baselines import zero_shot

    method = zero_shot(cfg.model, "def", model_and_tokenizer=load_base_model(cfg.model))
    return {split: score(method, tasks, limit, cfg, split) for split, (tasks, limit) in _splits(cfg).items()}


def tagi_stage(cfg: DemoConfig, run_dir: Path) -> dict[str, Any]:
    """TAGI: teachers, then distillation; scored on unseen tasks with their own and with shuffled
    instructions; the adapter of one unseen task's instruction exported as a PEFT folder and reloaded."""
    from hyperadapt.methods.tagi import export_adapter, train_tagi
    from hyperadapt.methods.tagi.instructions import shuffled_instructions

    tcfg = cfg.tagi()
    method = train_tagi(tcfg, run_dir, model_and_tokenizer=load_base_model(cfg.model))
    unseen = load_tasks(DATA, "unseen")
    out = {
        "config": to_dict(tcfg),
        "hypernet_parameters": method.hypernet.parameter_count(),
        "unseen": score(method, unseen, cfg.limit, cfg, "unseen"),
        "shuffled": score(method, shuffled_instructions(unseen, cfg.seed), cfg.limit, cfg, "unseen"),
    }
    task = next(t for t in unseen if t.name == ADAPTER_TASK)
    folder = export_adapter(method, task.instruction, Path(cfg.out) / f"adapter-{task.name}")
    out["adapter"] = check_peft_adapter(method, task, folder, cfg)
    return out


def check_peft_adapter(method: Any, task: Task, folder: Path, cfg: DemoConfig) -> dict[str, Any]:
    """Load the exported folder with plain PEFT onto the default model and answer one input with it, next to
    TAGI's own answer: the folder is a standard adapter that needs nothing from hyperadapt."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from hyperadapt.methods.inputs import answer_texts
    from hyperadapt.models import default_model_dir

    inst = task.instances[0]
    tagi_answer = answer_texts(method, [inst.input], [task.instruction], max_new_tokens=cfg.max_new_tokens)[0].answer
    prompt = build_prompt(method.tokenizer, task, inst, method.setting)  # the same prompt, for plain PEFT
    base_dir = default_model_dir() if cfg.model == "default" else Path(cfg.model)
    with peft_wrapping():
        peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), folder)
    peft_answer = generate_batch(peft_model, method.tokenizer, [prompt], cfg.max_new_tokens)[0]
    return {
        "folder": folder.name,
        "task": task.name,
        "instruction": task.instruction,
        "base": str(base_dir),
        "input": inst.input,
        "reference": inst.outputs[0],
        "tagi_answer": tagi_answer,
        "peft_answer": peft_answer,
        "files": sorted(p.name for p in folder.iterdir()),
    }


def hypter_stage(cfg: DemoConfig, run_dir: Path) -> dict[str, Any]:
    """The Hypter-style hypernetwork (CE only, no fusion) on TAGI's budget, on unseen tasks."""
    from hyperadapt.methods.tagi.hypter import train_hypter

    hcfg = cfg.hypter()
    method = train_hypter(hcfg, run_dir, model_and_tokenizer=load_base_model(cfg.model))
    return {"config": to_dict(hcfg), "unseen": score(method, load_tasks(DATA, "unseen"), cfg.limit, cfg, "unseen")}


def multitask_lora_stage(cfg: DemoConfig, run_dir: Path) -> dict[str, Any]:
    """The multi-task LoRA with the instruction in its prompt, on seen and unseen tasks."""
    from hyperadapt.methods.baselines import train_multitask_lora

    mcfg = cfg.multitask_lora()
    method = train_multitask_lora(mcfg, run_dir, model_and_tokenizer=load_base_model(cfg.model))
    out = {split: score(method, tasks, limit, cfg, split) for split, (tasks, limit) in _splits(cfg).items()}
    return {"config": to_dict(mcfg), **out}


def _stream_result(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("tasks", "matrix", "zero_shot", "metrics", "ap_curve", "after", "metric")
    out = {k: result[k] for k in keep}
    rows = [r["routing"] for r in result["rows"] if r.get("routing")]
    if rows:
        out["switch_accuracy"] = rows[-1]["switch_accuracy"]
        out["reject_rate_seen"] = rows[-1]["reject_rate_seen"]
        out["reject_rate_unseen"] = result.get("switch", {}).get("unseen_reject_rate")
    return out


def switchcit_stage(cfg: DemoConfig, run_dir: Path) -> dict[str, Any]:
    """SwitchCIT over the stream, then one mixed batch routed by the switch: one input of every stream task
    and two of tasks it never saw (which it should reject to the base model)."""
    from hyperadapt.methods.continual import run_stream
    from hyperadapt.methods.inputs import answer_texts
    from hyperadapt.methods.switch import load_switch

    scfg = cfg.stream()
    model_and_tokenizer = load_base_model(cfg.model)
    result = run_stream(scfg, run_dir / "stream", method="switchcit", model_and_tokenizer=model_and_tokenizer)
    out = {"config": to_dict(scfg), **_stream_result(result)}
    seen = {t.name: t for t in load_tasks(DATA, "seen")}
    unseen = load_tasks(DATA, "unseen")
    picked = [(seen[n], True) for n in result["tasks"]] + [(unseen[0], False), (unseen[7], False)]
    texts = [user_message(t.instruction, t.instances[-1].input, scfg.setting) for t, _ in picked]
    method = load_switch(run_dir / "stream", model_and_tokenizer)
    answers = answer_texts(method, texts, max_new_tokens=cfg.max_new_tokens)
    out["mixed_batch"] = [
        {
            "task": t.name,
            "in_stream": known,
            "input": t.instances[-1].input,
            "reference": t.instances[-1].outputs[0],
            "routed_to": None if a.route == "rejected" else a.route.removeprefix("task: "),
            "answer": a.answer,
        }
        for (t, known), a in zip(picked, answers, strict=True)
    ]
    return out


def sequential_stage(cfg: DemoConfig, run_dir: Path) -> dict[str, Any]:
    """Sequential finetuning of one LoRA over the same stream and budget (reuses SwitchCIT's base answers)."""
    from hyperadapt.methods.continual import run_stream

    scfg = cfg.stream()
    source = run_dir.parent / "switchcit" / "stream"
    seed = source if (source / "results.json").exists() and not (run_dir / "stream").exists() else None
    result = run_stream(
        scfg, run_dir / "stream", method="sequential", model_and_tokenizer=load_base_model(cfg.model), seed_from=seed
    )
    return {"config": to_dict(scfg), **_stream_result(result)}


def megan_stage(cfg: DemoConfig, run_dir: Path) -> dict[str, Any]:
    """MeGan (condition through β only) on seen and unseen tasks; β per layer for five conditions; one input
    answered under five conditions switched per example inside one batch."""
    import numpy as np

    from hyperadapt.methods.inputs import answer_texts
    from hyperadapt.methods.megan import collect_betas, train_megan

    mcfg = cfg.megan()
    method = train_megan(mcfg, run_dir, model_and_tokenizer=load_base_model(cfg.model))
    out = {
        "config": to_dict(mcfg),
        "hypernetwork_parameters": method.hypernet.num_parameters(),
        **{split: score(method, tasks, limit, cfg, split) for split, (tasks, limit) in _splits(cfg).items()},
    }
    seen = {t.name: t for t in load_tasks(DATA, "seen")}
    persona = load_tasks(DATA, "unseen_type")[0]
    conditions = [seen[n].instruction for n in BETA_TASKS] + [persona.instruction]
    inputs = [i.input for n in BETA_TASKS for i in seen[n].instances[:2]]
    betas = collect_betas(method, conditions, inputs, seed=cfg.seed)
    q = [1, 25, 50, 75, 99]
    out["beta"] = {
        c: [dict(zip(("p1", "q1", "med", "q3", "p99"), map(float, np.percentile(v, q)), strict=True)) for v in layers]
        for c, layers in betas.items()
    }
    out["beta_mean_abs_dev"] = {c: float(np.mean(np.abs(np.concatenate(v) - 1))) for c, v in betas.items()}
    text = seen["antonym"].instances[-1].input
    steer = [seen[n].instruction for n in STEER_TASKS] + [persona.instruction]
    answers = answer_texts(method, [text] * len(steer), steer, max_new_tokens=cfg.max_new_tokens)
    out["steering"] = {
        "input": text,
        "rows": [{"condition": c, "answer": a.answer} for c, a in zip(steer, answers, strict=True)],
    }
    return out


def checkpoint_stage(cfg: DemoConfig, run_dir: Path) -> dict[str, Any]:
    """A released TAGI checkpoint (no training): adapters from a few unseen instructions and their answers."""
    from hyperadapt.runs import Run, is_run

    path = Path(cfg.checkpoint)
    if not is_run(path):
        return {"available": False, "path": str(path)}
    from hyperadapt.methods.inputs import answer_texts

    method = Run.open(path).load()
    tasks = load_tasks(DATA, "unseen")[:4]
    answers = answer_texts(
        method, [t.instances[0].input for t in tasks], [t.instruction for t in tasks], max_new_tokens=cfg.max_new_tokens
    )
    rows = [
        {
            "task": task.name,
            "instruction": task.instruction,
            "input": task.instances[0].input,
            "reference": task.instances[0].outputs[0],
            "answer": a.answer,
        }
        for task, a in zip(tasks, answers, strict=True)
    ]
    return {"available": True, "path": str(path), "rows": rows}


Stage = Callable[[DemoConfig, Path], dict[str, Any]]
STAGES: dict[str, Stage] = {
    "zero-shot": zero_shot_stage,
    "tagi": tagi_stage,
    "hypter": hypter_stage,
    "multitask-lora": multitask_lora_stage,
    "switchcit": switchcit_stage,
    "sequential": sequential_stage,
    "megan": megan_stage,
    "checkpoint": checkpoint_stage,
}


def _scored(cfg: DemoConfig, *splits: str) -> dict[str, EvalConfig]:
    return {f"eval-{split}": eval_config(cfg, _limits(cfg)[split]) for split in splits}


# The library configs each stage runs with, derived from the demo config (the stage cache's key holds them, so
# that a changed library default reruns the stages it reaches); a stage that derives none is absent.
STAGE_CONFIGS: dict[str, Callable[[DemoConfig], dict[str, Any]]] = {
    "zero-shot": lambda cfg: _scored(cfg, "seen", "unseen"),
    "tagi": lambda cfg: {"tagi": cfg.tagi(), **_scored(cfg, "unseen")},
    "hypter": lambda cfg: {"hypter": cfg.hypter(), **_scored(cfg, "unseen")},
    "multitask-lora": lambda cfg: {"multitask-lora": cfg.multitask_lora(), **_scored(cfg, "seen", "unseen")},
    "switchcit": lambda cfg: {"stream": cfg.stream()},
    "sequential": lambda cfg: {"stream": cfg.stream()},
    "megan": lambda cfg: {"megan": cfg.megan(), **_scored(cfg, "seen", "unseen")},
}
# Two lanes of stages that run side by side, one process (one torch thread) each, about equally long.
LANES = (("zero-shot", "tagi", "hypter", "checkpoint"), ("multitask-lora", "switchcit", "sequential", "megan"))
