"""The context of one latent page: examples, histogram, logit effects, neighbours, explanation,
scores, match partners and families, scorer predictions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .config import ReportConfig
from .examples import examples, histogram, quantile_groups, visible
from .model_view import ModelView
from .table import DictionaryData


@dataclass
class Directions:
    """Unit decoder rows of a dictionary (for cosine neighbours) and raw rows (for logit effects)."""

    w_dec: torch.Tensor
    """float32 [d_sae, d_in]"""
    unit: torch.Tensor
    """float32 [d_sae, d_in], rows of norm 1"""

    @classmethod
    def of(cls, w_dec: torch.Tensor) -> "Directions":
        w = w_dec.detach().float().cpu()
        return cls(w, w / w.norm(dim=1, keepdim=True).clamp_min(1e-12))

    def neighbours(self, latents: list[int], n: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int [m, n], cosines float [m, n]) of the nearest other latents by decoder cosine."""
        cos = self.unit[latents] @ self.unit.T  # [m, d_sae]
        cos[torch.arange(len(latents)), torch.tensor(latents)] = -2.0  # not itself
        top = cos.topk(min(n, cos.shape[1] - 1), dim=1)
        return top.indices.numpy(), top.values.numpy()


def precompute(latents: list[int], directions: Directions | None, view: ModelView,
               config: ReportConfig) -> dict[int, dict[str, Any]]:
    """Decoder neighbours and logit effects of the page latents, in batches of 512."""
    out: dict[int, dict[str, Any]] = {latent: {} for latent in latents}
    if directions is None:
        return out
    for i in range(0, len(latents), 512):
        chunk = latents[i:i + 512]
        ids, cos = directions.neighbours(chunk, config.n_neighbours)
        effects = view.logit_effects(directions.w_dec[chunk], config.n_logits)
        for j, latent in enumerate(chunk):
            out[latent]["decoder"] = list(zip(ids[j].tolist(), np.round(cos[j], 3).tolist()))
            out[latent]["logits"] = effects[j] if effects else None
    return out


def page_context(data: DictionaryData, latent: int, tokens: torch.Tensor, view: ModelView, config: ReportConfig,
                 pre: dict[str, Any], cooc: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """Everything the latent template shows for `latent`."""
    store = data.store
    entries = store.activations(latent)
    maxima = store.window_maxima(latent)
    vmax = float(store.max_activations()[latent])
    order = np.lexsort((maxima.windows, -maxima.values))[:config.n_top_examples]
    top = type(maxima)(maxima.windows[order], maxima.values[order], maxima.positions[order])
    show = lambda m: examples(entries, m, tokens, view, vmax, config.context_before, config.context_after)  # noqa: E731
    text, kind = data.explanation(latent)
    freq = store.frequencies()
    return {
        "latent": latent, "max": round(vmax, 3), "n_fired": int(entries.values.size),
        "freq_percent": 100.0 * freq.per_token[latent], "window_percent": 100.0 * freq.per_window[latent],
        "n_tokens": freq.n_tokens, "n_windows": freq.n_windows,
        "top": show(top),
        "quantiles": [(label, show(g)) for label, g in quantile_groups(store, latent, config.n_quantiles,
                                                                        config.per_quantile, config.seed)],
        "histogram": histogram(entries.values, config.histogram_bins, store.n_tokens),
        "logits": pre.get("logits"), "decoder": pre.get("decoder"),
        "cooc": _cooc(cooc, latent, config.n_neighbours),
        "explanation": text, "explanation_kind": kind,
        "failed": data.interp.failed.get(latent) if data.interp else None,
        "scores": _scores(data, latent), "ndcg": data.ndcg(latent), "aside": _set_aside(data, latent),
        "at_chance": _at_chance(data),
        "matches": _matches(data, latent),
        "predictions": _predictions(data, latent, view, config.n_predictions),
    }


def _cooc(cooc: dict[str, np.ndarray] | None, latent: int, n: int) -> list[tuple[int, float]] | None:
    if cooc is None:
        return None
    idx, score = cooc["phi_index"][latent], cooc["phi_score"][latent]
    keep = idx >= 0
    return list(zip(idx[keep][:n].tolist(), np.round(score[keep][:n], 3).tolist()))


def _scores(data: DictionaryData, latent: int) -> dict[str, float]:
    if data.interp is None:
        return {}
    scores = {s: data.interp.score(s, latent) for s in data.interp.scorers}
    return {s: round(v, 3) for s, v in scores.items() if v is not None}


def _at_chance(data: DictionaryData) -> dict[str, str] | None:
    """{"label", "why"} where the run's LLM explanations do not beat shuffled (None where they do)."""
    from .references import explanation_scorers

    if data.interp is None or data.interp.at_chance is None:
        return None
    compared = bool(explanation_scorers(data.interp.summary, "explanation"))
    return {"label": "at chance" if compared else "not compared with chance", "why": data.interp.at_chance}


def _set_aside(data: DictionaryData, latent: int) -> dict[str, Any] | None:
    """The LLM's explanation of `latent` where its run's LLM explanations do not beat shuffled: its text (or
    why it failed) and its scores, shown beside the top-token headline and marked at chance."""
    aside = data.interp.set_aside if data.interp else None
    if aside is None or (latent not in aside.explanations and latent not in aside.failed):
        return None
    scores = {s: round(v, 3) for s in sorted(aside.scores) if (v := aside.scores[s].get(latent)) is not None}
    return {"explainer": aside.explainer, "text": aside.explanations.get(latent), "failed": aside.failed.get(latent),
            "scores": scores}


def _matches(data: DictionaryData, latent: int) -> list[dict[str, Any]]:
    out = []
    for m in data.matches:
        row = m.partners(data.name).get(latent)
        if row is None:
            continue
        out.append({"run": m.name, "other": m.other(data.name), "class": row.get("class"),
                    "one_to_one": _partner(row, "one_to_one_partner", "one_to_one_score"),
                    "best": _partner(row, "best_partner", "best_score"),
                    "family": m.family_of(data.name, latent), "narrow": m.families.get("narrow")})
    return out


def _partner(row: dict[str, Any], key: str, score: str) -> tuple[int, float] | None:
    p = row.get(key)
    if p is None or p < 0:
        return None
    return int(p), round(float(row.get(score) or 0.0), 3)


def _predictions(data: DictionaryData, latent: int, view: ModelView, n: int) -> dict[str, list[dict[str, Any]]]:
    """Per scorer: the first `n` held-out examples with their tokens (coloured by the true activation),
    the truth, the prediction and whether it was right."""
    if data.interp is None or n == 0:
        return {}
    out = {}
    vmax = max(float(data.store.max_activations()[latent]), 1e-12)
    for scorer in data.interp.scorers:
        recs = data.interp.records(scorer, latent)[:n]
        if recs:
            out[scorer] = [{"tokens": _record_tokens(r, view, vmax), "label": r.get("label"), "kind": r.get("kind"),
                            "prediction": r.get("prediction"), "probability": r.get("probability"),
                            "correct": r.get("correct"), "failed": r.get("failed"), "reason": r.get("reason")}
                           for r in recs]
    return out


def _record_tokens(rec: dict[str, Any], view: ModelView, vmax: float) -> list[dict[str, Any]]:
    ids = rec.get("tokens") or []
    acts = rec.get("activations") or [0.0] * len(ids)
    texts = view.text(ids) if all(isinstance(i, int) for i in ids) else [str(t) for t in ids]
    return [{"text": visible(t), "act": round(float(a), 3), "alpha": round(min(max(float(a) / vmax, 0.0), 1.0), 2),
             "peak": False} for t, a in zip(texts, acts)]
