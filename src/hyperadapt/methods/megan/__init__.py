"""MeGan: meta-gated SwiGLU, a hypernetwork that maps textual conditions to per-token Swish_β gates.

Entry points: :func:`train_megan`, :func:`load_megan` (answer with
:func:`hyperadapt.methods.inputs.answer_texts`); :class:`MeganMethod` is what the
evaluation harness runs; :func:`collect_betas` and :func:`cost_report` show what β does and what it costs.
"""

from hyperadapt.methods.megan.analysis import beta_plot_and_cost, beta_summary, collect_betas, cost_report
from hyperadapt.methods.megan.config import MeganConfig
from hyperadapt.methods.megan.hypernet import (
    BetaHypernetwork,
    ConditionBatch,
    HypernetSpec,
    embed_conditions,
    load_hypernetwork,
    save_hypernetwork,
)
from hyperadapt.methods.megan.train import HYPERNET_DIR, METHOD, MeganMethod, load_megan, train_megan
from hyperadapt.registry import register_method

register_method(
    METHOD, MeganConfig, train=train_megan, load=load_megan, folder=HYPERNET_DIR, serves_as="condition", releasable=True
)

__all__ = [
    "METHOD",
    "BetaHypernetwork",
    "ConditionBatch",
    "HypernetSpec",
    "MeganConfig",
    "MeganMethod",
    "beta_plot_and_cost",
    "beta_summary",
    "collect_betas",
    "cost_report",
    "embed_conditions",
    "load_hypernetwork",
    "load_megan",
    "save_hypernetwork",
    "train_megan",
]
