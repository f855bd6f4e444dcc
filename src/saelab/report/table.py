"""The latent table of a dictionary page (columnar JSON, one entry per latent) and the choice
of which latents get a page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..latents.store import LatentStore
from .sources import InterpRun, MatchRun

SCORERS = ("detection", "fuzz", "embedding")


@dataclass
class DictionaryData:
    """Everything the report knows about one dictionary, gathered once."""

    name: str
    store: LatentStore
    interp: InterpRun | None = None
    sfal_rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    """scores.csv row per scored latent"""
    ndcg_column: str | None = None
    matches: list[MatchRun] = field(default_factory=list)
    """match runs this dictionary takes part in"""

    def explanation(self, latent: int) -> tuple[str | None, str]:
        """(text, kind): the auto-interp explanation, else SFAL's description (None where auto-interp
        failed on this latent: a failure is shown as one, not papered over)."""
        if self.interp and latent in self.interp.explanations:
            return self.interp.explanations[latent], _kind(self.interp)
        if self.interp and latent in self.interp.failed:
            return None, "auto-interp failed"
        row = self.sfal_rows.get(latent)
        if row and row.get("explanation"):
            return row["explanation"], row.get("explanation_kind") or "SFAL explanation"
        return None, ""

    def ndcg(self, latent: int) -> float | None:
        row = self.sfal_rows.get(latent)
        return _float(row.get(self.ndcg_column)) if row and self.ndcg_column else None

    def partner(self, latent: int) -> tuple[str, int, float] | None:
        """(other dictionary, partner latent, score): the one-to-one partner, else the best one."""
        for m in self.matches:
            row = m.partners(self.name).get(latent)
            if row is None:
                continue
            for key, score in (("one_to_one_partner", "one_to_one_score"), ("best_partner", "best_score")):
                if row.get(key) is not None and row[key] >= 0:
                    return m.other(self.name), int(row[key]), float(row.get(score) or 0.0)
        return None


def _kind(run: InterpRun) -> str:
    """How the latent page labels the run's text; where the top-token descriptions lead because the run's LLM
    explanations are at chance, it says so."""
    if run.set_aside is None:
        return f"auto-interp ({run.explainer})"
    return (f"auto-interp ({run.explainer}): the {run.set_aside.explainer} explanations of this run are at chance, "
            "so the top-token description leads")


def _float(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def choose_pages(data: DictionaryData, cap: int, partners_of_pages: frozenset[int] = frozenset()) -> list[int]:
    """Latents that fire, ranked: explained (best mean score first), then partners of latents with a
    page in another dictionary, then with a one-to-one partner, then by firing frequency; the first `cap`."""
    freq = data.store.frequencies().per_token
    alive = np.flatnonzero(freq > 0)
    score = np.full(data.store.d_sae, -1.0)
    if data.interp:
        for latent in data.interp.explanations:
            s = [v for v in (data.interp.score(sc, latent) for sc in data.interp.scorers) if v is not None]
            score[latent] = 1.0 + (np.mean(s) if s else 0.0)
    for m in data.matches:
        for latent, row in m.partners(data.name).items():
            if row.get("one_to_one_partner", -1) >= 0 and score[latent] < 0:
                score[latent] = 0.5
    for latent in partners_of_pages:
        if 0 <= latent < score.size and score[latent] < 0.75:
            score[latent] = 0.75
    order = alive[np.lexsort((alive, -freq[alive], -score[alive]))]
    return sorted(order[:cap].tolist())


def table_json(data: DictionaryData, pages: dict[str, set[int]]) -> dict[str, Any]:
    """Columnar latent table: {"columns": [...], "rows": [[...], ...]} (one row per latent); `partner` is
    [dictionary, latent, score, has a page], `page` whether the latent has a page."""
    freq = data.store.frequencies().per_token
    vmax = data.store.max_activations()
    known = data.interp.scorers if data.interp else []
    scorers = [s for s in SCORERS if s in known] + [s for s in known if s not in SCORERS]
    columns = ["latent", "frequency", "max", "explanation", *scorers, "ndcg", "partner", "page"]
    rows = []
    for latent in range(data.store.d_sae):
        text, _ = data.explanation(latent)
        partner = data.partner(latent)
        rows.append([latent, _r(freq[latent], 6), _r(vmax[latent], 3), text,
                     *[_r(data.interp.score(s, latent), 3) for s in scorers],  # type: ignore[union-attr]
                     _r(data.ndcg(latent), 3),
                     None if partner is None else [partner[0], partner[1], round(partner[2], 3),
                                                   int(partner[1] in pages.get(partner[0], ()))],
                     int(latent in pages[data.name])])
    return {"dictionary": data.name, "columns": columns, "scorers": scorers, "rows": rows}


def partner_closure(dicts: list[DictionaryData], cap: int) -> dict[str, set[int]]:
    """Pages per dictionary: each dictionary's own choice, then a second pass that favours the match
    partners of the other dictionaries' pages (so a page's partner link lands on a page)."""
    first = {d.name: set(choose_pages(d, cap)) for d in dicts}
    out = {}
    for d in dicts:
        wanted: set[int] = set()
        for m in d.matches:
            other = m.other(d.name)
            for latent in first.get(other, ()):
                row = m.partners(other).get(latent) or {}
                wanted.update(p for p in (row.get("one_to_one_partner"), row.get("best_partner"))
                              if p is not None and p >= 0)
        out[d.name] = set(choose_pages(d, cap, frozenset(wanted)))
    return out
