"""Explanation sources: one text per latent, with what was skipped and why.

- a Neuronpedia export: `explanations/*.jsonl.gz` records (modelId, layer, index,
  description, explanationModelName, typeName, ...) — a directory, or one .jsonl(.gz) file;
  one explanation per latent is picked by type (SFAL: `oai_token-act-pair`) and, if given,
  by explainer model; other ones are counted, not used; `neuronpedia:MODEL_ID/SAE_ID`
  downloads Neuronpedia's public export of that SAE once (see neuronpedia.py);
- a plain table: .csv / .jsonl(.gz) with a latent column (`latent`, `index` or `feature`)
  and a text column (`explanation`, `description` or `text`);
- saelab's own auto-interp run: a directory `workspace/interp/RUN/` (read by
  `saelab.interp.load`: `explanations/<explainer>/<latent>.json`, failed ones skipped), or
  `interp` / `interp:RUN` in `saelab.sfal.run.explanations_for`;
- `top-tokens`: descriptions computed from the latent store (no LLM; see
  `saelab.interp.top_tokens`).
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError, FormatError
from .neuronpedia import fetch_export, is_neuronpedia_id

log = logging.getLogger(__name__)
LLM_KIND = "LLM explanation (Neuronpedia)"
FILE_KIND = "explanation (from file)"
LATENT_KEYS = ("latent", "index", "feature")
TEXT_KEYS = ("explanation", "description", "text")


@dataclass
class Explanations:
    """One explanation per latent."""

    texts: dict[int, str]
    source: str
    """Where they come from (path, Neuronpedia type/model, or `top-tokens`)."""
    kind: str
    """What the texts are — `LLM explanation (Neuronpedia)`, `explanation (from file)` or
    `top-token description (no LLM)` — printed in every report."""
    skipped: Counter = field(default_factory=Counter)
    """Records not used, by reason (out_of_range, empty, duplicate, other_type, failed)."""


def _open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        yield from f


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a .csv, .jsonl, .jsonl.gz file or of a directory of them
    (a Neuronpedia export's `explanations/` folder is looked for inside a directory)."""
    path = Path(path)
    if path.is_dir():
        inner = path / "explanations" if (path / "explanations").is_dir() else path
        files = sorted(p for p in inner.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz", ".csv")))
        if not files:
            raise FormatError(f"{path}: no .jsonl, .jsonl.gz or .csv files in it (nor in {path}/explanations).")
        return [r for f in files for r in read_records(f)]
    if not path.exists():
        raise ConfigError(f"explanations: {path} does not exist; give a CSV/JSONL file, a Neuronpedia export "
                          "directory, a saelab interp run, or `top-tokens`.")
    if path.name.endswith(".csv"):
        with open(path, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    if path.name.endswith((".jsonl", ".jsonl.gz", ".json.gz")):
        out = []
        for n, line in enumerate(_open_text(path), 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise FormatError(f"{path}:{n}: not a JSON record ({e}).") from None
        return out
    raise FormatError(f"{path}: expected .csv, .jsonl or .jsonl.gz (got {path.suffix!r}).")


def _key(record: dict[str, Any], keys: tuple[str, ...], path: Any) -> str:
    for k in keys:
        if k in record:
            return k
    raise FormatError(f"{path}: records have columns {sorted(record)}; expected one of {', '.join(keys)}.")


def _to_latent(value: Any, path: Any) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise FormatError(f"{path}: latent id {value!r} is not an integer.") from None


def _collect(rows: list[tuple[int, str]], d_sae: int, skipped: Counter, strict_duplicates: bool,
             path: Any) -> dict[int, str]:
    """Keep rows with an in-range latent and a non-empty text; the first of duplicates."""
    texts: dict[int, str] = {}
    conflicts = []
    for latent, text in rows:
        text = (text or "").strip()
        if not 0 <= latent < d_sae:
            skipped["out_of_range"] += 1
        elif not text:
            skipped["empty"] += 1
        elif latent in texts:
            skipped["duplicate"] += 1
            if strict_duplicates and texts[latent] != text:
                conflicts.append(latent)
        else:
            texts[latent] = text
    if conflicts:
        raise FormatError(f"{path}: {len(conflicts)} latent ids appear twice with different explanations "
                          f"(e.g. {conflicts[:5]}); keep one row per latent.")
    if skipped["out_of_range"]:
        log.warning("%s: %d explanations name latents outside 0..%d (skipped)", path, skipped["out_of_range"],
                    d_sae - 1)
    if rows and not texts:
        raise ConfigError(f"{path}: none of its {len(rows)} explanations is usable for a dictionary of {d_sae} "
                          f"latents (skipped: {dict(skipped)}): is it the right dictionary?")
    return texts


def from_table(path: str | Path, d_sae: int) -> Explanations:
    """A plain CSV/JSONL of (latent, explanation). Duplicate latent ids with different texts are an error."""
    records = read_records(path)
    if not records:
        raise FormatError(f"{path}: no records.")
    lk, tk = _key(records[0], LATENT_KEYS, path), _key(records[0], TEXT_KEYS, path)
    skipped: Counter = Counter()
    ok = [r for r in records if r.get("failed") not in (True, "true", "True")]  # failures are counted
    skipped["failed"] = len(records) - len(ok)
    rows = [(_to_latent(r[lk], path), str(r.get(tk) or "")) for r in ok]
    return Explanations(_collect(rows, d_sae, skipped, True, path), str(path), FILE_KIND, skipped)


def from_neuronpedia(path: str | Path, d_sae: int, type_name: str | None = "oai_token-act-pair",
                     explainer: str | None = None, sae: str | None = None, label: str | None = None) -> Explanations:
    """A Neuronpedia explanations export; one explanation per latent of type `type_name`
    (None: any) by `explainer` (None: any), for the SAE `sae` = "modelId/layer" (needed
    when the export holds several). `label` names the source in reports (default: the path)."""
    records = read_records(path)
    saes = sorted({f"{r.get('modelId')}/{r.get('layer')}" for r in records})
    if sae is None and len(saes) > 1:
        raise ConfigError(f"neuronpedia_sae: {path} holds {len(saes)} SAEs ({', '.join(saes[:10])}); choose one.")
    if sae is not None:
        records = [r for r in records if f"{r.get('modelId')}/{r.get('layer')}" == sae]
        if not records:
            raise ConfigError(f"neuronpedia_sae: got {sae!r}; {path} holds {', '.join(saes)}.")
    skipped: Counter = Counter()
    chosen = [r for r in records if (type_name is None or r.get("typeName") == type_name)
              and (explainer is None or r.get("explanationModelName") == explainer)]
    if records and not chosen:
        kinds = Counter(f"{r.get('typeName')}/{r.get('explanationModelName')}" for r in records)
        raise ConfigError(f"neuronpedia_type: no {type_name}/{explainer or 'any'} explanations in {path}; "
                          f"it has {dict(kinds.most_common(10))}.")
    skipped["other_type"] = len(records) - len(chosen)
    rows = [(_to_latent(r["index"], path), str(r.get("description") or "")) for r in chosen]
    source = f"{label or 'neuronpedia:' + str(path)} ({type_name or 'any type'}, {explainer or 'any explainer'})"
    return Explanations(_collect(rows, d_sae, skipped, False, path), source, LLM_KIND, skipped)


def from_interp_run(run_dir: str | Path, d_sae: int, explainer: str | None = None) -> Explanations:
    """The explanations of a saelab interp run (its configured explainer unless `explainer` is given)."""
    from ..interp.explainers.top_tokens import TOP_TOKENS
    from ..interp.load import read_explanations, run_explainer

    run_dir = Path(run_dir)
    name = run_explainer(run_dir, explainer)
    skipped: Counter = Counter()
    texts = _collect(sorted(read_explanations(run_dir, name).items()), d_sae, skipped, False, run_dir)
    kind = TOP_TOKENS.kind if name == TOP_TOKENS.name else f"LLM explanation (saelab interp, explainer {name})"
    return Explanations(texts, f"{run_dir} ({name})", kind, skipped)


def is_interp_run(path: Path) -> bool:
    """A saelab interp run: explanations/<explainer>/ folders (not a Neuronpedia export's files)."""
    inner = path / "explanations"
    return path.is_dir() and inner.is_dir() and any(p.is_dir() for p in inner.iterdir())


def load_explanations(spec: str | Path, d_sae: int, **neuronpedia: Any) -> Explanations:
    """Explanations from a file or directory, or `neuronpedia:MODEL_ID/SAE_ID` (downloaded once and
    cached); Neuronpedia records (with `typeName`) are recognised by their fields. (`top-tokens` is
    computed by `saelab.sfal.run`.)"""
    if is_neuronpedia_id(spec):
        path = fetch_export(str(spec))
        return from_neuronpedia(path, d_sae, label=f"{spec} (cached in {path})", **neuronpedia)
    path = Path(spec)
    if is_interp_run(path):
        return from_interp_run(path, d_sae)
    if path.is_dir() and (path / "explanations").is_dir() and not any((path / "explanations").glob("*.gz")):
        return from_table(path / "explanations", d_sae)  # a folder of plain tables
    records = read_records(path)
    if records and "typeName" in records[0] and "description" in records[0]:
        return from_neuronpedia(path, d_sae, **neuronpedia)
    return from_table(path, d_sae)
