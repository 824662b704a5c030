"""Evaluation against ground-truth clips: ``evaluate`` (files) and ``evaluate_prediction`` (arrays).

    from page4d_cli.eval import evaluate
    result = evaluate("page4d_out/cams", "examples/cams")
    result.summary()   # {'ate': ..., 'abs_rel': ..., 'chamfer': ..., 'mask_iou': ...}
"""

from page4d_cli.eval.evaluate import (
                                      EvalError,
                                      EvalOptions,
                                      PredictedClip,
                                      evaluate,
                                      evaluate_prediction,
                                      read_prediction,
)
from page4d_cli.eval.result import EvalResult

__all__ = ["EvalError", "EvalOptions", "EvalResult", "PredictedClip", "evaluate", "evaluate_prediction",
           "read_prediction"]
