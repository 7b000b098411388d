"""Classification metrics of the paper: precision, recall, F-measure, accuracy and RK.

RK is Gorodkin's multiclass generalisation of the Matthews correlation (the
paper's Eq 5), computed from a single confusion matrix ``C`` (rows true,
columns predicted)::

    RK = sum_klm (C_kk C_lm - C_kl C_mk)
         / ( sqrt(sum_k (sum_l C_kl) (sum_{k' != k} sum_l' C_k'l'))
           * sqrt(sum_k (sum_l C_lk) (sum_{k' != k} sum_l' C_l'k')) )

It is defined as 0 when either square root is 0 (a single true or predicted
class), the same convention as :func:`sklearn.metrics.matthews_corrcoef`,
which it equals on any labels (see ``tests/test_metrics.py``). This module
only needs numpy.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from edge.errors import DataError
from edge.layout import CLASS_NAMES


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Count ``(true, predicted)`` pairs.

    Args:
        y_true: True class indices.
        y_pred: Predicted class indices, same length.
        n_classes: Number of classes.

    Returns:
        int64 array ``(n_classes, n_classes)``; rows true, columns predicted.

    Raises:
        DataError: On different lengths or an index outside ``0..n_classes-1``.
    """
    t = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(y_pred).astype(np.int64).ravel()
    if t.shape != p.shape:
        raise DataError(f"{t.size} true labels but {p.size} predictions; expected the same number")
    for what, arr in (("true label", t), ("prediction", p)):
        bad = arr[(arr < 0) | (arr >= n_classes)]
        if bad.size:
            raise DataError(f"{what} {int(bad[0])} is not a class index; expected 0 to {n_classes - 1}")
    c = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(c, (t, p), 1)
    return c


def rk(confusion: np.ndarray) -> float:
    """Gorodkin's RK correlation (paper Eq 5) of a confusion matrix.

    Args:
        confusion: Square matrix of counts, rows true, columns predicted.

    Returns:
        RK in [-1, 1]; 0 when it is undefined.
    """
    c = np.asarray(confusion, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise DataError(f"confusion matrix has shape {c.shape}; expected a square matrix")
    total = c.sum()
    true_counts = c.sum(axis=1)   # sum_l C_kl
    pred_counts = c.sum(axis=0)   # sum_l C_lk
    # Numerator: sum_klm C_kk C_lm - C_kl C_mk  =  N * trace(C) - sum_k (row_k . col_k)
    numerator = total * np.trace(c) - float(np.dot(true_counts, pred_counts))
    den_true = float(np.dot(true_counts, total - true_counts))
    den_pred = float(np.dot(pred_counts, total - pred_counts))
    if den_true <= 0 or den_pred <= 0:
        return 0.0
    return float(numerator / (np.sqrt(den_true) * np.sqrt(den_pred)))


def rk_from_labels(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int = len(CLASS_NAMES)) -> float:
    """RK of two label sequences."""
    return rk(confusion_matrix(y_true, y_pred, n_classes))


def per_class(confusion: np.ndarray) -> Dict[str, np.ndarray]:
    """Per-class precision, recall and F-measure (paper Eqs 2-4).

    A ratio whose denominator is 0 is reported as 0 (scikit-learn's
    ``zero_division=0``).

    Returns:
        ``{"precision": (k,), "recall": (k,), "f1": (k,), "support": (k,)}``.
    """
    c = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(c)
    pred = c.sum(axis=0)
    true = c.sum(axis=1)
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": true.astype(np.int64)}


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int],
                    class_names: Sequence[str] = CLASS_NAMES) -> dict:
    """All figures of ``metrics.json``.

    Returns:
        ``{"accuracy", "rk", "n", <class>: {"precision", "recall", "f1", "support"},
        "confusion": [[...]] (rows true, columns predicted), "class_names"}``;
        all values plain Python numbers so the dict is JSON-able.
    """
    k = len(class_names)
    c = confusion_matrix(y_true, y_pred, k)
    n = int(c.sum())
    pc = per_class(c)
    out = {
        "n": n,
        "accuracy": float(np.trace(c) / n) if n else 0.0,
        "rk": rk(c),
        "class_names": list(class_names),
        "confusion": c.tolist(),
    }
    for i, name in enumerate(class_names):
        out[name] = {key: (float(pc[key][i]) if key != "support" else int(pc[key][i]))
                     for key in ("precision", "recall", "f1", "support")}
    return out


def row_normalize(confusion: np.ndarray) -> np.ndarray:
    """Divide each row by its total (rows with no trials stay 0), as in the paper's Fig 8."""
    c = np.asarray(confusion, dtype=np.float64)
    totals = c.sum(axis=1, keepdims=True)
    return np.divide(c, totals, out=np.zeros_like(c), where=totals > 0)
