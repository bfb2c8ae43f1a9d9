"""Correlation metrics between predicted and human scores (SROCC, PLCC, KRCC, via scipy)."""
from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["correlations", "median_correlations"]


def correlations(pred, target) -> dict[str, float]:
    """SROCC, PLCC and KRCC between predictions and ground truth (scipy).

    Args:
        pred: ``(N,)`` predictions.
        target: ``(N,)`` ground-truth MOS.

    Returns:
        ``{"srocc": ..., "plcc": ..., "krcc": ...}`` floats in ``[-1, 1]`` (NaN when undefined).
    """
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.ndim != 1:
        raise ValueError(f"pred and target must be equal-length vectors, got {pred.shape} and {target.shape}")
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(target) == 0:
        return {"srocc": float("nan"), "plcc": float("nan"), "krcc": float("nan")}
    return {"srocc": float(stats.spearmanr(pred, target)[0]),
            "plcc": float(stats.pearsonr(pred, target)[0]),
            "krcc": float(stats.kendalltau(pred, target)[0])}



def median_correlations(results: list[dict]) -> dict:
    """The median of each correlation over ``results`` (NaNs left out), with the results themselves.

    Returns:
        ``{"srocc", "plcc", "krcc"}`` medians, ``"n_splits"`` and the per-split ``"splits"``.
    """
    keys = ("srocc", "plcc", "krcc")
    med = {}
    for k in keys:
        vals = np.asarray([r[k] for r in results], dtype=np.float64)
        med[k] = float(np.median(vals[np.isfinite(vals)])) if np.isfinite(vals).any() else float("nan")
    med["n_splits"] = len(results)
    med["splits"] = results
    return med
