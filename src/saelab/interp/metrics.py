"""Classification metrics of scored records, per latent and pooled (micro: every example of
every latent in one confusion matrix). Failed records are counted, never scored."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np


def classification(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """precision, recall, F1, accuracy, balanced accuracy, AUC (where probabilities exist and both
    classes are present), n_examples (scored), n_failed. A metric without data is None."""
    records = list(records)
    ok = [r for r in records if not r["failed"]]
    y = np.array([r["label"] for r in ok], np.int64)
    p = np.array([r["prediction"] for r in ok], np.int64)
    tp, fp = int(((p == 1) & (y == 1)).sum()), int(((p == 1) & (y == 0)).sum())
    fn, tn = int(((p == 0) & (y == 1)).sum()), int(((p == 0) & (y == 0)).sum())
    div = lambda a, b: a / b if b else None  # noqa: E731
    precision, recall, tnr = div(tp, tp + fp), div(tp, tp + fn), div(tn, tn + fp)
    f1 = div(2 * tp, 2 * tp + fp + fn)
    balanced = None if recall is None or tnr is None else (recall + tnr) / 2
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": div(tp + tn, len(ok)),
            "balanced_accuracy": balanced, "auc": auc(ok), "n_examples": len(ok),
            "n_failed": len(records) - len(ok), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def auc(records: list[dict[str, Any]]) -> float | None:
    """ROC-AUC of `probability` against `label` (ties count half); None without both classes."""
    scored = [r for r in records if r.get("probability") is not None]
    if len(scored) < len(records) or not scored:
        return None
    y = np.array([r["label"] for r in scored])
    s = np.array([r["probability"] for r in scored], np.float64)
    pos, neg = s[y == 1], s[y == 0]
    if not pos.size or not neg.size:
        return None
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))
