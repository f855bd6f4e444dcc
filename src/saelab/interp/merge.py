"""Merge finished interp runs over disjoint latents into one run with one summary.

Why: a CPU judge scores ~20 latents an hour, so latents get explained in slices (`--latents 20 …`),
on several machines or on several days; the question "are these explanations above chance?" is
asked of all of them together. Each slice's per-example records, explanations and examples are
copied unchanged; the summary (pooled metrics, the latent-by-latent comparisons and their
bootstrap CIs) is computed once over the union.

The runs must have been made the same way (examples, explainer, model, prompts, scorers), else
the merged numbers would average two different measurements: the settings that differ are named
and the merge is refused. What may differ is which latents, and how the work was spread (batch
size, timeouts, server URL). The shuffled baseline of each latent stays the one its own run
scored (another latent's explanation from the same run): chance either way.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from .._io import json_safe, read_json, umask_mode, versions, write_json
from ..errors import ArtifactError, ConfigError
from .config import ExampleConfig, InterpConfig
from .explainers.top_tokens import TOP_TOKENS
from .registry import scorer_class
from .run import _load_explanations, add_time
from .summary import TIMINGS, write_summary

log = logging.getLogger(__name__)

MAY_DIFFER = ("latents", "max_latents", "batch_size", "timeout_s", "max_retries", "retry_backoff_s", "base_url",
              "api_key_env")
"""Config keys that say which latents a run covered or how its requests were spread, not how it measured."""

VARIANT_ORDER = ("explanation", TOP_TOKENS.variant, "shuffled")


def _latents(run: Path) -> list[int]:
    return sorted(int(p.stem) for p in (run / "examples").glob("*.json") if p.stem.lstrip("-").isdigit())


def _config(cfg: dict[str, Any]) -> InterpConfig:
    c = dict(cfg)
    c["examples"] = ExampleConfig(**c["examples"])
    c["scorers"] = tuple(c["scorers"])
    c["latents"] = tuple(c["latents"]) if c.get("latents") is not None else None
    return InterpConfig(**c)


def _check(runs: list[Path], cfgs: list[dict[str, Any]]) -> None:
    first, ref = runs[0], cfgs[0]
    for run, cfg in zip(runs[1:], cfgs[1:]):
        diff = [f"{k}: {ref.get(k)!r} vs {cfg.get(k)!r}" for k in ("dictionary", "tokens_hash", "dictionary_hash")
                if cfg.get(k) != ref.get(k) and (k != "dictionary_hash" or None not in (cfg.get(k), ref.get(k)))]
        a, b = ref["config"], cfg["config"]
        diff += [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b))
                 if k not in MAY_DIFFER and a.get(k) != b.get(k)]
        if diff:
            raise ConfigError(f"runs: {first} and {run} were not made the same way, so their scores do not pool: "
                              + "; ".join(diff) + ". Merge only runs that differ in their latents.")
        dtypes = {(c.get("client") or {}).get("dtype") for c in (ref, cfg)} - {None}
        if len(dtypes) > 1:
            log.warning("the runs' judges ran in different dtypes (%s): merged anyway, the model is the same",
                        ", ".join(sorted(dtypes)))


def _variants(run: Path, scorer: str) -> list[str]:
    found = {p.name for p in (run / "scores" / scorer).glob("*") if p.is_dir()}
    return [v for v in VARIANT_ORDER if v in found]


def merge(runs: Sequence[str | Path], out: str | Path, overwrite: bool = False) -> Path:
    """Merge the finished interp runs `runs` (directories, disjoint latents, one dictionary) into `out`: a run
    directory of the same layout, whose summary covers every latent. `out` is written whole or not at all.

    Example:
        >>> merge(["ws/interp/qwen-a", "ws/interp/qwen-b"], "ws/interp/qwen-ab")
    """
    runs = [Path(r) for r in runs]
    out = Path(out)
    if len(runs) < 2:
        raise ConfigError(f"runs: got {len(runs)} run(s); merging needs at least two.")
    seen: dict[Path, Path] = {}
    for run in runs:  # the same run twice overlaps on every latent; the latent check below would not see it
        if (first := seen.setdefault(run.resolve(), run)) is not run:
            also = f" (as {first} too)" if str(first) != str(run) else ""
            raise ConfigError(f"runs: {run} is given more than once{also}; merged runs must cover disjoint latents: "
                              "give each run once.")
    for run in runs:
        if not (run / "run_config.json").exists() or not (run / "examples").is_dir():
            raise ArtifactError(f"runs: {run} is not an interp run (no run_config.json / examples/).")
        summary = read_json(run / "summary.json") if (run / "summary.json").exists() else None
        if summary is None or summary.get("partial"):
            raise ArtifactError(f"runs: {run} is unfinished (no summary, or a partial one); rerun its command to "
                                "finish it, then merge.")
        if out.resolve() == run.resolve():
            raise ConfigError(f"out: {out} is one of the runs being merged; choose another name.")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ArtifactError(f"out: {out} exists; pass overwrite=True (--overwrite) to replace it.")
    cfgs = [read_json(r / "run_config.json") for r in runs]
    _check(runs, cfgs)
    slices = {run: _latents(run) for run in runs}
    owner: dict[int, Path] = {}
    for run, latents in slices.items():
        for latent in latents:
            if latent in owner:
                raise ConfigError(f"runs: latent {latent} is in both {owner[latent]} and {run}; merged runs must "
                                  "cover disjoint latents.")
            owner[latent] = run
    config = _config({**cfgs[0]["config"], "latents": sorted(owner), "max_latents": None})

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(umask_mode(0o777))  # mkdtemp's 0700 would become the run's own mode
    try:
        _copy(slices, tmp)
        write_json(tmp / "run_config.json", {
            **{k: v for k, v in cfgs[0].items() if k != "versions"}, "config": json_safe(asdict(config)),
            "merged_from": [{"run": str(r.resolve()), "latents": slices[r], "client": c.get("client")}
                            for r, c in zip(runs, cfgs)],
            "versions": versions()})
        skipped = {}
        for run in runs:
            path = run / "examples" / "skipped.json"
            skipped.update({int(k): v for k, v in (read_json(path) if path.exists() else {}).items()})
        skipped = {k: v for k, v in skipped.items() if k not in owner}
        write_json(tmp / "examples" / "skipped.json", {str(k): v for k, v in skipped.items()})
        explained = {p.name: _load_explanations(p, owner) for p in sorted((tmp / "explanations").glob("*"))
                     if p.is_dir()}
        write_summary(tmp, config, dict.fromkeys(owner), skipped, explained, _texts(tmp, config),
                      merged_from=[{"run": str(r), "latents": slices[r]} for r in runs])
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("merged %d runs (%d latents) into %s", len(runs), len(owner), out)
    return out


def _copy(slices: dict[Path, list[int]], tmp: Path) -> None:
    """Each latent's examples, explanations and score records from the run that made them; summed timings."""
    first = next(iter(slices))
    (tmp / "examples").mkdir(parents=True, exist_ok=True)
    if (first / "examples" / "config.json").exists():
        shutil.copy2(first / "examples" / "config.json", tmp / "examples" / "config.json")
    for run, mine in slices.items():
        files = [run / "examples" / f"{l}.json" for l in mine]
        files += [p for d in (run / "explanations").glob("*") for l in mine if (p := d / f"{l}.json").exists()]
        files += [p for s in (run / "scores").glob("*") for v in s.glob("*") for l in mine
                  if (p := v / f"{l}.json").exists()]
        for src in files:
            dst = tmp / src.relative_to(run)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        for key, t in (read_json(run / TIMINGS) if (run / TIMINGS).exists() else {}).items():
            add_time(tmp, key, t["seconds"], t["n_latents"])


def _texts(run: Path, config: InterpConfig) -> dict[str, dict[int, str]]:
    """{variant: {latent: the explanation text its records were scored with}}, read from the score files (the
    shuffled assignment of each latent is its own run's)."""
    texts: dict[str, dict[int, str]] = {}
    for scorer in (s for s in config.scorers if scorer_class(s).uses_explanation):
        for variant in _variants(run, scorer):
            for path in (run / "scores" / scorer / variant).glob("*.json"):
                texts.setdefault(variant, {}).setdefault(int(path.stem), read_json(path)["explanation"])
    return {v: texts[v] for v in VARIANT_ORDER if v in texts}
