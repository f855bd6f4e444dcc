"""Sentences of the diff report, each built from measured numbers (never from a template of claims).

A sentence states a count, a rate or a score and what it was measured on; where there is
nothing to say (no target-only latents, naming skipped) the sentence says that instead.
"""

from __future__ import annotations

from typing import Any

from ..interp import TOP_TOKENS
from .table import delta_spread

CORPUS = "corpus"
SCALING_LIMIT = 0.3
TAIL_N = 20
"""Latents in each Δnorm tail (most target-leaning, most base-leaning) whose favourite group is counted."""
TAIL_MIN_COUNT = 20
"""Firings a latent needs to enter the tail count (a rate from a handful of firings is noise)."""


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "–"


def _f1(m: dict[str, Any] | None) -> str:
    return "–" if not m or m.get("f1") is None else f"{m['f1']:.2f}"


def explainer_phrase(named: dict[str, Any] | None) -> str:
    if not named:
        return "not named (naming was skipped)"
    if named["kind"] == TOP_TOKENS.name:
        return "described by their most frequent tokens (top-tokens, no LLM)"
    return f"explained by the LLM {named['explainer']}"


def top_group(table: dict[str, Any], tag: str) -> tuple[str, float, float] | None:
    """(group where latents of `tag` fire most, its mean per-latent rate, the corpus rate), or None."""
    rates = table.get("tag_by_group", {}).get(tag)
    if not rates or not any(r > 0 for r in rates):
        return None
    groups = table["groups"]
    i = max(range(len(groups)), key=lambda g: rates[g])
    return groups[i], rates[i], rates[groups.index(CORPUS)] if CORPUS in groups else float("nan")


def _where(table: dict[str, Any], tag: str) -> str:
    found = top_group(table, tag)
    if found is None:
        return ""
    group, rate, corpus = found
    if group == CORPUS:
        return f", firing most on corpus text ({100 * rate:.2f}% of its tokens per latent)"
    ratio = f", {rate / corpus:.1f}× their rate on the corpus" if corpus > 0 else ""
    return f", most of them firing on {group} prompts ({100 * rate:.2f}% of its tokens per latent{ratio})"


def favourite_group(row: dict[str, Any], groups: list[str]) -> str | None:
    """The group (corpus or a category) where the latent fires at the highest rate, or None if unknown."""
    rates = row.get("frequency_by_group")
    if not rates or len(rates) != len(groups) or max(rates) <= 0:
        return None
    return groups[max(range(len(groups)), key=lambda g: rates[g])]


def latent_focus(row: dict[str, Any], groups: list[str]) -> str:
    """Where one latent fires most, against its corpus rate ("" when it is the corpus or unknown)."""
    rates = row.get("frequency_by_group")
    if not rates or CORPUS not in groups:
        return ""
    group = favourite_group(row, groups)
    if group in (None, CORPUS):
        return "; fires most on corpus text"
    rate, corpus = rates[groups.index(group)], rates[groups.index(CORPUS)]
    ratio = f", {rate / corpus:.1f}× its corpus rate" if corpus > 0 else ", never on the corpus"
    return f"; fires most on {group} ({100 * rate:.1f}% of its tokens{ratio})"


def _eligible(table: dict[str, Any], n: int, min_count: int) -> list[dict[str, Any]] | None:
    """Latents firing ≥ `min_count` times with a known favourite group, by rising Δnorm; None if fewer than 2·n
    or the table has no category groups."""
    groups = table.get("groups") or []
    rows = [r for r in table["latents"] if r["count"] >= min_count and favourite_group(r, groups) is not None]
    if len(rows) < 2 * n or len(groups) < 2:
        return None
    return sorted(rows, key=lambda r: r["delta_norm"])


def leaning_tail(table: dict[str, Any], side: str, n: int = TAIL_N,
                 min_count: int = TAIL_MIN_COUNT) -> dict[str, Any] | None:
    """Where the `n` latents that lean furthest to `side` ("target": lowest Δnorm; "base": highest) fire most,
    against where all latents with ≥ `min_count` firings fire most.

    Returns {group, k, n, share_all, n_all, p, lo, hi}: `k` of the `n` tail latents fire most on `group`
    (the non-corpus group with the most tail latents), `share_all` is that group's share among all `n_all`
    eligible latents, `p` the one-sided binomial probability of `k` or more under that share, multiplied by
    the number of categories (Bonferroni: the group was picked as the tail's largest), and `lo`/`hi` the
    tail's Δnorm range. None when there are fewer than 2·n eligible latents or no category groups.
    """
    from scipy.stats import binomtest

    groups = table.get("groups") or []
    rows = _eligible(table, n, min_count)
    if rows is None:
        return None
    rows = rows[::-1] if side == "base" else rows
    tail = rows[:n]
    fav_tail = [favourite_group(r, groups) for r in tail]
    cats = [g for g in groups if g != CORPUS]
    group = max(cats, key=lambda g: (fav_tail.count(g), -cats.index(g)))
    k = fav_tail.count(group)
    if k == 0:
        return None
    share = sum(favourite_group(r, groups) == group for r in rows) / len(rows)
    p = min(1.0, len(cats) * binomtest(k, n, share, alternative="greater").pvalue) if 0 < share < 1 else 1.0
    return {"side": side, "group": group, "k": k, "n": n, "share_all": share, "n_all": len(rows), "p": float(p),
            "n_groups": len(cats), "lo": min(r["delta_norm"] for r in tail), "hi": max(r["delta_norm"] for r in tail)}


def tail_table(table: dict[str, Any], n: int = TAIL_N, min_count: int = TAIL_MIN_COUNT) -> dict[str, Any] | None:
    """Per group: the share of all eligible latents whose favourite group it is, and how many of the `n` most
    target-leaning and most base-leaning latents favour it (None when `leaning_tail` would say nothing)."""
    groups = table.get("groups") or []
    rows = _eligible(table, n, min_count)
    if rows is None:
        return None
    fav = [favourite_group(r, groups) for r in rows]
    return {"n": n, "n_all": len(rows), "min_count": min_count,
            "rows": [{"group": g, "share_all": fav.count(g) / len(rows), "target": fav[:n].count(g),
                      "base": fav[-n:].count(g)} for g in groups]}


def _tail_sentence(table: dict[str, Any], side: str) -> str:
    t = leaning_tail(table, side)
    if t is None:
        return ""
    which = "lowest" if side == "target" else "highest"
    p = f"{t['p']:.1e}" if t["p"] < 1e-3 else f"{t['p']:.3f}"
    return (f"Of the {t['n']} most {side}-leaning latents ({which} Δnorm, {t['lo']:.3f}–{t['hi']:.3f}; each firing "
            f"≥ {TAIL_MIN_COUNT} times), {t['k']} fire most on {t['group']}, the group where "
            f"{100 * t['share_all']:.1f}% of all {t['n_all']:,} such latents fire most (one-sided binomial p = {p}, "
            f"Bonferroni-corrected for picking the largest of {t['n_groups']} categories).")


def _spread_sentence(table: dict[str, Any]) -> str:
    s = delta_spread(table)
    if not s["n"]:
        return ""
    t, b = s["threshold"], s["bands"]
    return (f"Δnorm of the {s['n']:,} latents that fire (0: target only, 1: base only): median {s['median']:.3f}, "
            f"interquartile range {s['q25']:.3f}–{s['q75']:.3f}, 5th–95th percentile {s['p05']:.3f}–{s['p95']:.3f}, "
            f"s.d. {s['std']:.3f}; {b['target-only']:,} below {t:g} (target-only), {b['shared']:,} within {t:g} of "
            f"0.5 (shared), {b['base-only']:,} above {1 - t:g} (base-only).")


def _named_phrase(rows: list[dict[str, Any]], group: str, kind: str, groups: list[str], n: int = 3) -> str:
    picked = [r for r in rows if r["group"] == group and r.get("explanation")][:n]
    if not picked:
        return ""
    what = "description" if kind == TOP_TOKENS.name else "explanation"
    parts = []
    for r in picked:
        shuffled = f" vs {_f1(r.get('shuffled_detection'))} shuffled" if r.get("shuffled_detection") else ""
        parts.append(f"#{r['latent']} “{r['explanation']}” (detection F1 {_f1(r.get('detection'))}{shuffled}"
                     f"{latent_focus(r, groups)})")
    label = {"target-only": "target-only", "base-only": "base-only", "most-changed": "most-changed"}[group]
    return f"The strongest {label} latents by {what}: " + "; ".join(parts) + "."


def layer_sentences(view: dict[str, Any]) -> list[str]:
    """Sentences for one layer's section."""
    t, layer, named = view["table"], view["layer"], view["named"]
    c, alive = t["counts"], t["n_alive"]
    out = [f"Layer {layer}: {c.get('target-only', 0):,} target-only latents ({_pct(c.get('target-only', 0), alive)} "
           f"of the {alive:,} that fire){_where(t, 'target-only')}; {c.get('base-only', 0):,} base-only "
           f"({_pct(c.get('base-only', 0), alive)}){_where(t, 'base-only')}; {c.get('shared', 0):,} shared "
           f"({_pct(c.get('shared', 0), alive)}); {c.get('other', 0):,} other. {t['n_dead']:,} of "
           f"{t['d_sae']:,} latents never fired on the {t['n_tokens']:,} tokens."]
    out += [x for x in (_spread_sentence(t), _tail_sentence(t, "target"), _tail_sentence(t, "base")) if x]
    s = t.get("scaling")
    if s and s.get("n_tested"):
        out.append(f"Latent scaling: {s['n_genuine']:,} of {s['n_tested']:,} tested exclusive latents have ν_ε and "
                   f"ν_r below {SCALING_LIMIT} (genuinely specific to one model); {s['n_tested'] - s['n_genuine']:,} "
                   "may be artifacts of the crosscoder's sparsity (complete shrinkage or latent decoupling).")
    if named is None:
        out.append("Naming was skipped: the latents are counted, not interpreted.")
    else:
        rows = view["named_rows"]
        for group in ("target-only", "base-only", "most-changed"):
            phrase = _named_phrase(rows, group, named["kind"], t["groups"])
            if phrase:
                out.append(phrase)
        if not rows:
            out.append("No latent had enough activating examples to be named.")
    f = t.get("fvu")
    if f:
        out.append(f"The crosscoder leaves FVU {f['base']:.3f} (base) and {f['target']:.3f} (target) unexplained on "
                   f"{f['n_tokens']:,} {f['split']} tokens.")
    return out


def overview_sentences(run: dict[str, Any], sweep: dict[str, Any] | None, layers: list[dict[str, Any]]) -> list[str]:
    d = run["data"]
    out = [f"Base {run['base']['spec']} vs target {run['target']['spec']}, compared on {d['n_text_tokens']:,} "
           f"tokens: {d['n_corpus_windows']:,} windows of {d['corpus']} and {d['n_prompts']:,} prompts in "
           f"{len(d['categories'])} categories ({', '.join(d['categories'])})."]
    if sweep:
        rel = sweep["rel_norm"]
        i = max(range(len(rel)), key=lambda j: rel[j])
        inc = sweep["increment"][sweep["layers"].index(sweep["changed_layer"])]
        out.append(f"The residual streams diverge most at layer {sweep['layers'][i]} (relative norm of the difference "
                   f"{rel[i]:.3f}); the largest step up is at layer {sweep['changed_layer']} (+{inc:.3f}).")
        kl = {g: v for g, v in sweep["kl_by_group"].items() if v == v}
        if kl:
            g = max(kl, key=kl.get)
            base = kl.get(CORPUS)
            cmp = f" vs {base:.3f} on corpus text" if base is not None and g != CORPUS else ""
            out.append(f"Next-token KL(target ‖ base) is highest on {g} ({kl[g]:.3f} nats per token{cmp}); "
                       f"{sweep['kl_mean']:.3f} on average over {sweep['n_tokens']:,} tokens.")
    named = next((v["named"] for v in layers if v["named"]), None)
    out.append(f"Crosscoder latents at layer{'s' if len(layers) > 1 else ''} "
               f"{', '.join(str(v['layer']) for v in layers)} were {explainer_phrase(named)}.")
    return out


def limits(run: dict[str, Any], sweep: dict[str, Any] | None, layers: list[dict[str, Any]]) -> list[str]:
    """What the data cannot support, in plain sentences."""
    d = run["data"]
    out = [f"Token counts: {d['n_text_tokens']:,} tokens in all, {d['n_prompt_tokens']:,} of them in "
           f"{d['n_prompts']:,} category prompts. Per-category rates rest on a handful of prompts each, so differences "
           "of a fraction of a percent between categories are noise; a latent with fewer than "
           f"{min_examples(run['naming'])} activating examples was not named."]
    if sweep:
        out.append(f"The layer sweep and the KL numbers come from {sweep['n_tokens']:,} tokens "
                   f"(CKA from {sweep['n_cka_tokens']:,}).")
    for v in layers:
        t = v["table"]
        f = t.get("fvu")
        if f:
            out.append(f"Layer {v['layer']}: the crosscoder leaves {100 * f['target']:.0f}% of the target's and "
                       f"{100 * f['base']:.0f}% of the base's variance unexplained ({f['split']} tokens); a change "
                       "that lives in that residual is invisible to its latents.")
        n_excl = t["counts"].get("target-only", 0) + t["counts"].get("base-only", 0)
        n_named = len(v["named_rows"])
        if v["named"] is not None and n_excl > n_named:
            out.append(f"Layer {v['layer']}: {n_named} latents were named; {n_excl - n_named:,} exclusive latents are "
                       "counted but not interpreted.")
        if n_excl and n_excl < 5:
            out.append(f"Layer {v['layer']}: only {n_excl} exclusive latents — too few to say what kind of change "
                       "dominates.")
    if run.get("tokenizer_notes"):
        out.append("The two tokenizers cut ordinary text identically but differ in special tokens ("
                   + "; ".join(run["tokenizer_notes"]) + "). Both models read the base tokenizer's ids, so the "
                   "target's activations next to those tokens may differ for that reason alone.")
    named = next((v["named"] for v in layers if v["named"]), None)
    out.append(_explainer_limit(named))
    out.append("Δnorm tags describe how this one crosscoder (one seed, "
               f"{run['crosscoder_summary']}) divides its decoder norm between the models; a target-only latent "
               "means the base model's activations are not reconstructed with that direction, not that the base "
               "model cannot represent the concept.")
    return out


def min_examples(naming: dict[str, Any]) -> int:
    """Activating examples a latent needed to be named, from a run's `naming` settings (`examples.min_examples`;
    runs made before naming took interp's ExampleConfig kept it at the top)."""
    return naming["min_examples"] if "min_examples" in naming else naming["examples"]["min_examples"]


def _explainer_limit(named: dict[str, Any] | None) -> str:
    if named is None:
        return "Explainer quality: no latent was named, so nothing here says what a latent means."
    if named["kind"] == TOP_TOKENS.name:
        return ("Explainer quality: the latents are described by the tokens they fire on most (no LLM). These name "
                "tokens, not concepts, and their detection score is a token-match rule, not a judge's reading.")
    p = named.get("pooled", {})
    main, shuf = p.get("explanation"), p.get("shuffled")
    score = ""
    if main and shuf and main.get("f1") is not None and shuf.get("f1") is not None:
        verdict = "above" if main["f1"] > shuf["f1"] + 0.05 else "not clearly above"
        score = (f" Pooled detection F1 {main['f1']:.2f} vs {shuf['f1']:.2f} with shuffled explanations (measured "
                 f"chance) over {main['n_examples']} examples: {verdict} chance.")
    small = " SmolLM2-135M explained at chance level in saelab's own measurement." if "smollm2" in named[
        "explainer"] else ""
    return f"Explainer quality: explanations by {named['explainer']}, judged by the same model.{score}{small}"
