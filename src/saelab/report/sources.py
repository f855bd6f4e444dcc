"""Read what each stage left in the workspace; every reader returns None when its stage has not run.

The report never re-runs a stage: it renders the artifacts on disk (DESIGN.md §3).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._io import CFG_NAME, read_json
from ..workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class MatchRun:
    """One `match/A__B/` artifact."""

    name: str
    cfg: dict[str, Any]
    latents: list[dict[str, Any]]
    """latents.parquet rows: dictionary, latent, class, one_to_one_partner, best_partner, best_score, …"""
    families: dict[str, Any]
    path: Path
    _by_side: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict, repr=False)

    def partners(self, dictionary: str) -> dict[int, dict[str, Any]]:
        """latent → its latents.parquet row, for one side of the match."""
        if dictionary not in self._by_side:
            self._by_side[dictionary] = {r["latent"]: r for r in self.latents if r["dictionary"] == dictionary}
        return self._by_side[dictionary]

    def family_of(self, dictionary: str, latent: int) -> dict[str, Any] | None:
        """The family this latent is the parent or a member of (families.json), if any."""
        narrow = self.families.get("narrow")
        for fam in self.families.get("families", []):
            if (dictionary == narrow and fam.get("parent") == latent) or \
                    (dictionary != narrow and latent in fam.get("members", [])):
                return fam
        return None

    def other(self, dictionary: str) -> str:
        return self.cfg["b"] if dictionary == self.cfg["a"] else self.cfg["a"]


@dataclass(frozen=True)
class SetAside:
    """An LLM explanation set that does not beat shuffled explanations on its run's own scores
    (`references.set_beats_shuffled`): its latents' pages lead with the top-token descriptions and show these
    texts beside their scores, marked at chance."""

    explainer: str
    explanations: dict[int, str]
    failed: dict[int, str]
    scores: dict[str, dict[int, float]]
    """scorer → latent → AUC (balanced accuracy where there is no AUC) of the LLM's explanation"""


@dataclass
class InterpRun:
    """`interp/NAME/` (the auto-interp stage): the explainer's explanations, per-latent scores and the
    scorers' per-example records (read through `saelab.interp.load`)."""

    explainer: str
    explanations: dict[int, str]
    failed: dict[int, str]
    """latent → reason, for explanations the explainer failed to produce"""
    scores: dict[str, dict[int, float]] = field(default_factory=dict)
    """scorer → latent → AUC (balanced accuracy where there is no AUC), from per_latent.json"""
    recorded: list[str] = field(default_factory=list)
    """scorers that wrote per-example records of the variant shown"""
    summary: dict[str, Any] | None = None
    path: Path | None = None
    variant: str = "explanation"
    """the score variant shown: the explainer's own explanation, or the top-tokens baseline's"""
    set_aside: SetAside | None = None
    """the run's LLM explanations where they do not beat shuffled: shown beside their scores, never as headlines"""
    at_chance: str | None = None
    """why the run's LLM explanations are at chance (None where they beat shuffled, or the run has no LLM)"""

    @property
    def scorers(self) -> list[str]:
        return sorted(set(self.scores) | set(self.recorded))

    def score(self, scorer: str, latent: int) -> float | None:
        return self.scores.get(scorer, {}).get(latent)

    def records(self, scorer: str, latent: int) -> list[dict[str, Any]]:
        from ..interp.load import read_records

        if self.path is None or scorer not in self.recorded:
            return []
        return read_records(self.path, scorer, self.variant, latent)


def json_or_none(path: Path) -> Any:
    return read_json(path) if path.exists() else None


def evals(ws: Workspace) -> list[tuple[str, dict[str, Any]]]:
    """(run name, {"cfg", "comparison", "metrics": {dictionary: metrics}}) per `evals/RUN/`."""
    out = []
    for d in sorted(p for p in (ws.root / "evals").glob("*") if p.is_dir()):
        metrics = {p.name.removesuffix("_metrics.json"): read_json(p) for p in sorted(d.glob("*_metrics.json"))}
        if (d / "metrics.json").exists():
            m = read_json(d / "metrics.json")
            metrics[m.get("dictionary", {}).get("name", d.name)] = m
        if metrics:
            out.append((d.name, {"cfg": json_or_none(d / CFG_NAME), "comparison": json_or_none(d / "comparison.json"),
                                 "metrics": metrics, "summary": _text(d / "summary.txt")}))
    return out


def matches(ws: Workspace) -> list[MatchRun]:
    import pyarrow.parquet as pq

    out = []
    for d in sorted(p for p in (ws.root / "match").glob("*__*") if (p / CFG_NAME).exists()):
        rows = pq.read_table(d / "latents.parquet").to_pylist() if (d / "latents.parquet").exists() else []
        out.append(MatchRun(d.name, read_json(d / CFG_NAME), rows, json_or_none(d / "families.json") or {}, d))
    return out


def cooc_neighbours(ws: Workspace, dictionary: str) -> dict[str, np.ndarray] | None:
    """{"phi_index" int32 [d_sae, top_k] (−1 padded), "phi_score" float32 […]} or None."""
    path = ws.root / "cooc" / dictionary / "neighbours.safetensors"
    if not path.exists():
        return None
    from safetensors.numpy import load_file

    t = load_file(str(path))
    return {"phi_index": t["phi_index"], "phi_score": t["phi_score"], "cfg": read_json(path.parent / CFG_NAME)}


def cooc_cfg(ws: Workspace, dictionary: str) -> dict[str, Any] | None:
    return json_or_none(ws.root / "cooc" / dictionary / CFG_NAME)


def sfal(ws: Workspace, dictionary: str) -> dict[str, Any] | None:
    """{"summary": summary.json, "rows": scores.csv rows, "cfg": cfg.json} or None."""
    d = ws.root / "sfal" / dictionary
    if not (d / "summary.json").exists():
        return None
    rows = []
    if (d / "scores.csv").exists():
        with open(d / "scores.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    return {"summary": read_json(d / "summary.json"), "rows": rows, "cfg": json_or_none(d / CFG_NAME)}


def interp(ws: Workspace, dictionary: str, run_dir: Path | None = None) -> InterpRun | None:
    """The interp run `run_dir`, else the dictionary's preferred one (`interp/DICTIONARY/`, else the newest
    that names it), read by `saelab.interp.load`: the run's explainer (an LLM's where there is one, else the
    top-tokens baseline), its explanations and failures, and the scores of the variant they were scored as.

    An LLM explanation set that does not beat shuffled on the run's own scores (`references`) is not shown as
    the latents' headline: the run is read as its top-token descriptions, with the LLM's texts set aside."""
    from ..interp import TOP_TOKENS, load
    from .references import chance_sentence, set_beats_shuffled

    d = run_dir or load.find_run(ws, dictionary)
    if d is None:
        return None
    explainer = load.run_explainer(d)
    summary = load.read_summary(d)
    if explainer == TOP_TOKENS.name or set_beats_shuffled(summary):
        return _read_run(d, explainer, summary)
    who = explained_by(d)
    why = chance_sentence(summary, who)
    if not (d / "explanations" / TOP_TOKENS.name).is_dir():  # an older run: nothing else to lead with
        return replace(_read_run(d, explainer, summary), at_chance=why)
    aside = SetAside(who, load.read_explanations(d, explainer), load.read_failures(d, explainer),
                     _scores(d, load.scored_variant(explainer)))
    return replace(_read_run(d, TOP_TOKENS.name, summary), set_aside=aside, at_chance=why)


def explained_by(run_dir: Path) -> str:
    """Who wrote a run's explanations: the explainer model its run_config.json names, else the explainer."""
    from ..interp import load

    cfg = read_json(run_dir / "run_config.json") if (run_dir / "run_config.json").exists() else {}
    return (cfg.get("config") or {}).get("explainer_model") or load.run_explainer(run_dir)


def _read_run(d: Path, explainer: str, summary: dict[str, Any] | None) -> InterpRun:
    from ..interp import load

    variant = load.scored_variant(explainer)
    return InterpRun(explainer, load.read_explanations(d, explainer), load.read_failures(d, explainer),
                     _scores(d, variant), load.scorers_with_records(d, variant), summary, d, variant)


def _scores(d: Path, variant: str) -> dict[str, dict[int, float]]:
    from ..interp import load

    return {scorer: {l: v for l, m in per.items() if (v := _key_metric(m)) is not None}
            for scorer, per in load.read_per_latent(d, variant).items()}


def interp_control(run_dir: Path) -> dict[str, dict[str, dict[str, Any]]] | None:
    """CONTROL: the random-model control of an interp run (`saelab autointerp --control RUN`, written by
    `saelab.interp.control.write_control` into the run's control.json) as {scorer: {explanation set: row}}, each
    row the real run's mean per-latent score minus the control's (`mean`, `mean_reference`, `difference`,
    `ci_low`, `ci_high`, `n_latents`, `n_latents_reference`, `above`); rows with nothing scored on a side are left
    out. None where the control has not run."""
    from ..interp.control import CONTROL_NAME

    path = run_dir / CONTROL_NAME
    if not path.exists():
        return None
    return {scorer: {r["variant"]: r for r in rows if "difference" in r}
            for scorer, rows in (read_json(path).get("comparisons") or {}).items()}


def _key_metric(m: dict[str, Any]) -> float | None:
    """AUC where the scorer gives probabilities, else balanced accuracy; Pearson r (simulation), accuracy
    (intruder) — the interp summary's choice."""
    for key in ("auc", "balanced_accuracy", "pearson_r", "accuracy"):
        if isinstance(m.get(key), (int, float)):
            return float(m[key])
    return None


def _text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None
