"""Text summaries: each metric, its value, what is good, and what to try next."""

from __future__ import annotations

from typing import Any, Callable

# (group, key, label, format, better, guide): better = "lower" | "higher" | None (no winner)
METRICS: list[tuple[str, str, str, str, str | None, str]] = [
    ("reconstruction", "fvu", "FVU", "{:.4f}", "lower", "< 0.1 excellent, 0.1–0.3 typical, > 0.5 poor"),
    ("reconstruction", "explained_variance", "explained variance", "{:.4f}", "higher", "1 − FVU"),
    ("reconstruction", "explained_variance_legacy", "explained variance (legacy, per token)", "{:.4f}", "higher",
     "SAELens/SAEBench per-token figure; not comparable with the above"),
    ("reconstruction", "mse", "MSE (per element)", "{:.4g}", "lower", "scale-dependent"),
    ("reconstruction", "cossim", "cosine(x, x̂)", "{:.4f}", "higher", "> 0.95 good"),
    ("reconstruction", "relative_reconstruction_bias", "relative reconstruction bias γ", "{:.3f}", None,
     "1 = unbiased; < 1 shrinkage"),
    ("sparsity", "l0", "L0 (active latents / token)", "{:.1f}", None, "a choice: 20–100 is common"),
    ("sparsity", "l1", "L1 (sum of activations / token)", "{:.4g}", None, "scale-dependent"),
    ("sparsity", "dead_fraction", "dead fraction", "{:.2%}", "lower", "< 10% good; > 30% wasteful"),
    ("sparsity", "dense_fraction_gt_10pct", "dense (> 10% of tokens)", "{:.2%}", "lower", "≈ 0 good"),
    ("sparsity", "dense_fraction_gt_1pct", "fires on > 1% of tokens", "{:.2%}", None, "a few percent is normal"),
    ("downstream", "ce_loss_score", "CE-loss score", "{:.4f}", "higher", "> 0.9 good, > 0.97 excellent"),
    ("downstream", "delta_ce", "ΔCE (nats/token)", "{:.4f}", "lower", "< 0.1 good"),
    ("downstream", "kl_with_reconstruction", "KL to the clean model", "{:.4f}", "lower", "< 0.1 good"),
    ("downstream", "kl_score", "KL score", "{:.4f}", "higher", "> 0.9 good"),
    ("absorption", "mean_absorption_fraction", "absorption fraction (mean)", "{:.3f}", "lower", "< 0.05 acceptable"),
    ("absorption", "mean_full_absorption_rate", "full absorption (mean)", "{:.3f}", "lower", "< 0.05 acceptable"),
    ("absorption", "mean_num_split_latents", "split latents per letter", "{:.2f}", "lower", "1 = no splitting"),
]


def metric_value(metrics: dict[str, Any], group: str, key: str) -> float | None:
    v = metrics.get(group, {}).get(key)
    return float(v) if isinstance(v, (int, float)) else None


def suggestions(m: dict[str, Any]) -> list[str]:
    """Concrete next steps driven by the measured values."""
    out: list[str] = []
    fvu, l0 = metric_value(m, "reconstruction", "fvu"), metric_value(m, "sparsity", "l0")
    dead, dense = metric_value(m, "sparsity", "dead_fraction"), metric_value(m, "sparsity", "dense_fraction_gt_10pct")
    ce, bias = (metric_value(m, "downstream", "ce_loss_score"),
                metric_value(m, "reconstruction", "relative_reconstruction_bias"))
    n_tok = m.get("sparsity", {}).get("n_tokens", 0)
    if dead is not None and dead > 0.1:
        out.append(f"{dead:.0%} of latents never fired over {n_tok:,} tokens: raise the AuxK coefficient, lower the "
                   "learning rate, or train on more tokens; if few tokens were evaluated, evaluate on more before "
                   "judging.")
    if fvu is not None and fvu > 0.3 and l0 is not None and l0 < 64:
        out.append(f"FVU {fvu:.2f} at L0 {l0:.0f}: a larger k or a wider dictionary should reconstruct better.")
    if fvu is not None and fvu > 0.3 and (l0 is None or l0 >= 64):
        out.append(f"FVU {fvu:.2f}: train longer (more tokens) or widen the dictionary.")
    train = m.get("training") or {}
    moved, fit = train.get("decoder_cos_init"), train.get("training_fvu")
    if isinstance(moved, float) and moved > 0.8:
        out.append(f"the decoder rows have hardly left their random initialisation (median cosine {moved:.2f}): "
                   "the dictionary is under-trained, whatever its FVU; train for more steps (--epochs reads the "
                   "same tokens again without new model forwards).")
    if isinstance(fit, float) and fvu is not None and fvu - fit > 0.05:
        out.append(f"held-out FVU {fvu:.3f} is {fvu - fit:.3f} above the training FVU {fit:.3f}: the dictionary "
                   "fits its training tokens better than new ones (over-fitting); train on more tokens or fewer "
                   "epochs.")
    if dense is not None and dense > 0.01:
        out.append(f"{dense:.1%} of latents fire on > 10% of tokens: dense latents carry little meaning; "
                   "check the excluded positions (attention sink) and consider a smaller k.")
    if ce is not None and fvu is not None and ce < 0.9 and fvu < 0.2:
        out.append(f"CE-loss score {ce:.2f} is low for FVU {fvu:.2f}: the error lies in directions the model uses; "
                   "try an end-to-end (KL) fine-tune or a transcoder.")
    if bias is not None and bias < 0.9:
        out.append(f"relative reconstruction bias {bias:.2f} < 1: activations are shrunk (an L1 penalty does this); "
                   "TopK / JumpReLU avoid it.")
    ab = m.get("absorption", {})
    if ab.get("note"):
        out.append(f"absorption: {ab['note']}")
    return out or ["nothing stands out: the measured values are in their usual ranges."]


def training_line(t: dict[str, Any]) -> str:
    """One line on how the dictionary was trained (saelab's cfg.json record)."""
    parts = [f"trained for {t['steps']:,} steps" if isinstance(t.get("steps"), int) else "trained"]
    if isinstance(t.get("tokens_seen"), int):
        parts.append(f"{t['tokens_seen']:,} tokens ({t.get('epochs', 1):g} passes)")
    if isinstance(t.get("decoder_cos_init"), float):
        parts.append(f"decoder rows' median cosine to their initialisation {t['decoder_cos_init']:.2f}")
    if isinstance(t.get("training_fvu"), float):
        parts.append(f"training FVU {t['training_fvu']:.3f} (last steps)")
    return "training: " + ", ".join(parts)


def _fmt(fmt: str, v: Any) -> str:
    return fmt.format(v) if isinstance(v, (int, float)) else "n/a"


def summary_text(m: dict[str, Any]) -> str:
    d = m["dictionary"]
    lines = [f"saelab eval: {d['name']} ({d.get('architecture', d['kind'])}, {d['kind']}, d_in {d['d_in']}, "
             f"d_sae {d.get('d_sae')}) at {d['hookpoint']}"
             + (f" → {d['out_hookpoint']}" if d['out_hookpoint'] != d['hookpoint'] else ""),
             f"tokens: {m.get('reconstruction', {}).get('n_tokens', 0):,} text positions of windows "
             f"{m['windows'][0]}–{m['windows'][1] - 1}"
             f"; CE/KL on {m.get('downstream', {}).get('n_positions', 0):,} positions; "
             f"excluded: {', '.join(m.get('excluded', []))}"]
    if m.get("warnings"):
        lines += [f"WARNING: {w}" for w in m["warnings"]]
    if t := m.get("training"):
        lines.append(training_line(t))
    lines += ["", f"{'metric':42s} {'value':>12s}   good range"]
    for group, key, label, fmt, _better, guide in METRICS:
        if group in m and key in m[group]:
            lines.append(f"{label:42s} {_fmt(fmt, m[group][key]):>12s}   {guide}")
    for group in ("sparsity", "absorption"):
        if m.get(group, {}).get("not_applicable"):
            lines.append(f"{group:42s} {'n/a':>12s}   {m[group]['not_applicable']}")
    lines += ["", "suggestions:"] + [f"- {s}" for s in suggestions(m)]
    return "\n".join(lines) + "\n"


def winner(better: str | None, a: float | None, b: float | None) -> str:
    if better is None:
        return "—"
    if a is None or b is None:
        return "not applicable"
    if abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1):
        return "tie"
    pick: Callable[[float, float], bool] = (lambda x, y: x < y) if better == "lower" else (lambda x, y: x > y)
    return "a" if pick(a, b) else "b"


def comparison_rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for group, key, label, fmt, better, guide in METRICS:
        va, vb = metric_value(a, group, key), metric_value(b, group, key)
        if va is None and vb is None:
            continue
        rows.append({"metric": f"{group}.{key}", "label": label, "a": va, "b": vb, "better": better,
                     "winner": winner(better, va, vb), "format": fmt, "guide": guide})
    return rows


def comparison_text(names: tuple[str, str], rows: list[dict[str, Any]], a: dict[str, Any]) -> str:
    na, nb = names
    lines = [f"saelab compare: {na} (a) vs {nb} (b) on the same {a.get('reconstruction', {}).get('n_tokens', 0):,} "
             "text positions",
             "", f"{'metric':42s} {na[:14]:>14s} {nb[:14]:>14s}   winner"]
    for r in rows:
        w = {"a": na, "b": nb}.get(r["winner"], r["winner"])
        lines.append(f"{r['label']:42s} {_fmt(r['format'], r['a']):>14s} {_fmt(r['format'], r['b']):>14s}   {w}")
    return "\n".join(lines) + "\n"
