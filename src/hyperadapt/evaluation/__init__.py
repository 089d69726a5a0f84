"""Generation, metrics and the harness that judges every method."""

from hyperadapt.evaluation.harness import EvalConfig, PromptMethod, Query, evaluate, write_results

__all__ = ["EvalConfig", "PromptMethod", "Query", "evaluate", "write_results"]
