"""The methods and baselines, by the name the CLI and configs use.

``TRAINABLE[name] = (ConfigClass, train_fn)`` with ``train_fn(cfg, run_dir, resume) -> method``;
``LOADABLE[name] = load_fn(run_dir) -> method``; ``PROMPT_ONLY`` need no run directory. Continual
methods (SwitchCIT and its baselines) run whole task streams: ``hyperadapt.methods.continual.LEARNERS``
names them (importing this package imports ``methods/switch``, which adds ``switchcit`` there).
"""

from __future__ import annotations

from pathlib import Path

from hyperadapt.methods.baselines import (
    MultiTaskLoraConfig,
    load_multitask_lora,
    train_multitask_lora,
    zero_shot,
)
from hyperadapt.methods.baselines.meta import MetaICLConfig, ReptileConfig, load_meta, train_metaicl, train_reptile
from hyperadapt.methods.continual.learners import single_lora_methods
from hyperadapt.methods.continual.runner import load_final_adapter
from hyperadapt.methods.megan import MeganConfig, load_megan, train_megan
from hyperadapt.methods.switch import load_switch
from hyperadapt.methods.tagi import TagiConfig, load_tagi, train_tagi
from hyperadapt.methods.tagi.hypter import HypterConfig, load_hypter, train_hypter

TRAINABLE = {
    "multitask-lora": (MultiTaskLoraConfig, train_multitask_lora),
    "tagi": (TagiConfig, train_tagi),
    "hypter": (HypterConfig, train_hypter),
    "megan": (MeganConfig, train_megan),
    "metaicl": (MetaICLConfig, train_metaicl),
    "reptile": (ReptileConfig, train_reptile),
}
LOADABLE = {
    "multitask-lora": load_multitask_lora,
    "tagi": load_tagi,
    "hypter": load_hypter,
    "megan": load_megan,
    "metaicl": load_meta,
    "reptile": load_meta,
}
PROMPT_ONLY = {"zero-shot": zero_shot}
METHOD_NAMES = sorted({*TRAINABLE, *LOADABLE, *PROMPT_ONLY})


def run_method(run_dir: str | Path) -> str:
    """The method a run directory holds, from its ``run.json`` (``FileNotFoundError`` without one)."""
    from hyperadapt.io import load_json

    path = Path(run_dir) / "run.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no run.json): train a method into it first")
    method = load_json(path, "run file").get("method")
    if not isinstance(method, str):
        raise ValueError(f"{path} names no method")
    return method


def load_run(run_dir: str | Path, model_and_tokenizer=None):
    """The ready-to-evaluate method of any run directory: a trained method (multi-task LoRA, TAGI, Hypter,
    MeGan, MetaICL, Reptile), a released checkpoint, a SwitchCIT continual run (routed per input), or a
    sequential / replay / O-LoRA / multi-task stream (the LoRA it ends with, for every input).

    Raises ``FileNotFoundError`` for a folder without ``run.json`` or an unfinished stream, and ``ValueError``
    for a run whose method cannot be loaded for evaluation (the oracle: it needs each input's true task).
    """
    method = check_loadable(run_dir)
    if method in LOADABLE:
        return LOADABLE[method](run_dir, model_and_tokenizer)
    if method in single_lora_methods():
        return load_final_adapter(run_dir, model_and_tokenizer)
    return load_switch(run_dir, model_and_tokenizer)


def check_loadable(run_dir: str | Path) -> str:
    """The method of a run directory that ``load_run`` can load (a finished run of a loadable method), else
    the ``FileNotFoundError`` or ``ValueError`` that says why not; loads nothing."""
    from hyperadapt.runs import check_finished

    method = run_method(run_dir)
    check_finished(run_dir, method)
    loadable = [*LOADABLE, "switchcit", *single_lora_methods()]
    if method not in loadable:
        raise ValueError(f"{run_dir} is a {method!r} run, which cannot be loaded for evaluation: loadable runs are "
                         f"{', '.join(loadable)}")
    return method


def check_method(name: str) -> None:
    if name not in METHOD_NAMES:
        raise ValueError(f"unknown method {name!r}: use one of {', '.join(METHOD_NAMES)}")


def run_model(run_dir: str | Path, model: str | None = None) -> str:
    """The base model a trained run uses (its ``run.json`` config), which is what evaluating it evaluates.

    ``model``, when given, must name that same model: a run's adapters or hypernetwork only fit the model
    they were trained on, so any other is refused with a ``ValueError``.
    """
    from hyperadapt.io import load_json
    from hyperadapt.models import same_model

    run = load_json(Path(run_dir) / "run.json", "run file")
    own = (run.get("config") or {}).get("model")
    if not isinstance(own, str):
        raise ValueError(f"{run_dir}/run.json names no base model (config.model)")
    if model is not None and not same_model(model, own):
        raise ValueError(f"--model {model!r} does not match the model the run {run_dir} was trained on ({own!r}): "
                         "a run is evaluated on its own model; leave out --model")
    return own
