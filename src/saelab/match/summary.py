"""summary.md and coverage.png of a match: the headline, which signals were used, the
quality/coverage curve against its random baseline, and the largest families with each
member's top tokens (and explanations, where auto-interp has written them)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from .._io import read_json, write_text
from ..errors import SaelabError
from ..render.plots import figure, save
from ..workspace import Workspace
from .analysis import MatchAnalysis, curves
from .config import MatchConfig
from .index import MatchIndex

log = logging.getLogger(__name__)

N_FAMILIES_SHOWN = 10


def token_decoder(workspace: Workspace) -> Callable[[int], str]:
    """id → quoted token string, with the tokenizer of the model that made the windows; `#id` without it."""
    try:
        from transformers import AutoTokenizer

        from ..models.load import resolve_model_path

        spec = read_json(workspace.tokens / "cfg.json")["model"]
        tok = AutoTokenizer.from_pretrained(resolve_model_path(spec)[0])
        return lambda i: repr(tok.decode([int(i)]))
    except (SaelabError, OSError, ValueError, KeyError) as e:  # tiny test models, no tokenizer files
        log.info("top tokens shown as ids: no tokenizer (%s)", e)
        return lambda i: f"#{int(i)}"


def explanation(workspace: Workspace, name: str, latent: int) -> str | None:
    """The auto-interp explanation of a latent of dictionary `name`, where `saelab autointerp` wrote one."""
    return explanations(workspace, name).get(latent)


def explanations(workspace: Workspace, name: str) -> dict[int, str]:
    """{latent: explanation} of dictionary `name` from its interp run ({} without one)."""
    from ..interp.load import load_explanations

    return load_explanations(workspace, name)


def headline(index: MatchIndex, analysis: MatchAnalysis) -> dict:
    """The three numbers the demo prints, with the names and thresholds that make them readable."""
    narrow, wide = (index.a, index.b) if analysis.narrow == "a" else (index.b, index.a)
    cn, cw = ((analysis.classes_a, analysis.classes_b) if analysis.narrow == "a"
              else (analysis.classes_b, analysis.classes_a))
    matched = int((cn == "matched").sum())
    parents = int((cn == "family parent").sum())
    h = {"narrow": narrow.name, "wide": wide.name, "n_narrow": narrow.d_sae, "n_wide": wide.d_sae,
         "one_to_one": int((analysis.one_to_one.score >= analysis.match_threshold).sum()),
         "matched": matched, "family_parents": parents, "unique": int((cn == "unique").sum()),
         "identical": int((cw == "identical").sum()), "split_children": int((cw == "split child").sum()),
         "novel": int((cw == "novel").sum()),
         "families_confirmed": (sum(bool(f.activation.get("confirmed")) for f in analysis.families)
                                if any(f.activation for f in analysis.families) else None),
         "signal": analysis.primary, "threshold": round(analysis.match_threshold, 4)}
    h["text"] = (f"{h['one_to_one']:,} of {h['n_narrow']:,} {narrow.name} latents have a one-to-one partner in "
                 f"{wide.name} ({analysis.primary.replace('_', ' ')} ≥ {analysis.match_threshold:.2f}); "
                 f"{parents:,} split into families ({h['split_children']:,} {wide.name} children); "
                 f"{h['novel']:,} of {h['n_wide']:,} {wide.name} latents are novel (best score < novel threshold)")
    return h


def plot_curves(path: Path, analysis: MatchAnalysis, narrow_name: str) -> None:
    fig, ax = figure(6, 4)
    styles = {"one_to_one": "-", "many_to_one": "--", "baseline_one_to_one": ":"}
    for name, curve in curves(analysis).items():
        ax.plot([c["threshold"] for c in curve], [c["fraction"] for c in curve], styles[name],
                label=name.replace("_", " "))
    ax.axvline(analysis.match_threshold, color="grey", lw=0.8)
    ax.set_xlabel(analysis.primary.replace("_", " ") + " threshold")
    ax.set_ylabel(f"fraction of {narrow_name} latents matched")
    ax.legend()
    save(fig, path)


def _family_lines(workspace: Workspace, index: MatchIndex, analysis: MatchAnalysis, decode: Callable) -> list[str]:
    narrow, wide = (index.a, index.b) if analysis.narrow == "a" else (index.b, index.a)
    top_n, top_w = (index.top_a, index.top_b) if analysis.narrow == "a" else (index.top_b, index.top_a)

    texts = {name: explanations(workspace, name) for name in (narrow.name, wide.name)}

    def describe(name: str, top: np.ndarray | None, latent: int) -> str:
        toks = ", ".join(decode(t) for t in top[latent][top[latent] >= 0][:8]) if top is not None else "—"
        expl = texts[name].get(latent)
        return f"{toks}" + (f" — “{expl}”" if expl else "")

    lines = []
    for f in sorted(analysis.families, key=lambda f: (-len(f.members), -f.recon_cosine))[:N_FAMILIES_SHOWN]:
        act = f.activation
        stats = (f"; union Jaccard {act['union_jaccard']:.2f}, co-firing {act['cofire_fraction']:.2f}, "
                 f"r(parent, Σ members) {act['union_correlation']:.2f}") if act else ""
        lines += [f"### {narrow.name} {f.parent} → {len(f.members)} {wide.name} latents",
                  f"rebuilt at cosine {f.recon_cosine:.2f} (best single {f.best_single_cosine:.2f}){stats}", "",
                  "| latent | NNLS weight | cosine | top tokens |", "| --- | --- | --- | --- |",
                  f"| {narrow.name} {f.parent} (parent) | | | {describe(narrow.name, top_n, f.parent)} |"]
        lines += [f"| {wide.name} {m} | {w:.2f} | {c:.2f} | {describe(wide.name, top_w, m)} |"
                  for m, w, c in zip(f.members, f.weights, f.member_cosines)]
        lines.append("")
    return lines


def write_summary(out: Path, workspace: Workspace, index: MatchIndex, analysis: MatchAnalysis,
                  config: MatchConfig) -> dict:
    """Write summary.md and coverage.png into `out`; return the headline."""
    h = headline(index, analysis)
    narrow_name = h["narrow"]
    plot_curves(out / "coverage.png", analysis, narrow_name)
    not_used = [f"- {k.replace('_', ' ')}: not used — {v}." for k, v in index.reasons.items()]
    curve = curves(analysis)
    rows = [f"| {c['threshold']:.2f} | {c['fraction']:.3f} | {m['fraction']:.3f} | {z['fraction']:.3f} |"
            for c, m, z in zip(curve["one_to_one"], curve["many_to_one"], curve["baseline_one_to_one"])][::2]
    lines = [f"# Match: {index.a.name} ({index.a.d_sae:,}) × {index.b.name} ({index.b.d_sae:,})", "",
             f"**{h['text']}.**", "",
             "## Signals", f"- deciding signal: {analysis.primary.replace('_', ' ')}",
             *[f"- {s.replace('_', ' ')}: used" for s in index.signals], *not_used,
             f"- random baseline: {analysis.baseline}; its {config.chance_quantile:.0%} quantile is "
             f"{analysis.chance:.3f}, so a match needs ≥ {analysis.match_threshold:.3f}",
             *([f"- encoder and decoder agree on the best partner for {analysis.encoder_agreement:.1%} of "
                f"{index.a.name}'s latents"] if analysis.encoder_agreement is not None else []), "",
             "## Classes", f"- {h['narrow']}: {h['matched']:,} matched, {h['family_parents']:,} family parents, "
             f"{h['unique']:,} unique" + (f" ({h['families_confirmed']:,} of the families confirmed by activations: "
                                          f"parent ≈ union of members, Jaccard ≥ {config.family_min_union_jaccard}, "
                                          f"co-firing ≤ {config.family_max_cofire})"
                                          if h["families_confirmed"] is not None else ""),
             f"- {h['wide']}: {h['identical']:,} identical, {h['split_children']:,} split children, "
             f"{h['novel']:,} novel (best score < {config.novel_threshold}), the rest related", "",
             "## Quality / coverage", "![coverage](coverage.png)", "",
             "| threshold | one-to-one | many-to-one | baseline |", "| --- | --- | --- | --- |", *rows, "",
             "## Largest families", *(_family_lines(workspace, index, analysis, token_decoder(workspace))
                                      if analysis.families else [analysis.family_note + "."])]
    write_text(out / "summary.md", "\n".join(lines) + "\n")
    return h
