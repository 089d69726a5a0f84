"""Continual instruction tuning: tasks arrive one by one; every learner trains on task k, then answers every
task of the stream, filling the accuracy matrix. Resumable after any task.

- ``config.py``   ``ContinualConfig``: the stream, the per-task LoRA and budget, evaluation, the baselines
- ``stream.py``   the tasks of a stream, the context a learner works in, LoRA training, evaluation through
                  an adapter bank with the answer cache (``answers.jsonl``)
- ``store.py``    the adapter store: one LoRA folder per task (PEFT's layout; int8 by default), written once
                  (``adapters/``)
- ``learners.py`` the learners (oracle, sequential, replay, O-LoRA, multi-task) and ``LEARNERS``, the table
                  of them by name (SwitchCIT, in ``methods/switch``, registers itself there)
- ``runner.py``   ``run_stream``: the one runner, ``run.json``/``state.json``, the results and their report

Example::

    results = run_stream(cfg, "runs/cl/sequential", "sequential")   # any name in LEARNERS
"""

from hyperadapt.methods.continual.config import BaselineConfig, ContinualConfig, LoraSpec, StreamEval
from hyperadapt.methods.continual.learners import LEARNERS, StreamLearner, learner_class, register_learner
from hyperadapt.methods.continual.runner import export_task_adapter, run_stream, stream_extent, stream_stopped_at

__all__ = [
    "LEARNERS",
    "BaselineConfig",
    "ContinualConfig",
    "LoraSpec",
    "StreamEval",
    "StreamLearner",
    "export_task_adapter",
    "learner_class",
    "register_learner",
    "run_stream",
    "stream_extent",
    "stream_stopped_at",
]
