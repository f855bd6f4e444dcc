"""Find one dictionary in a tree of files: a local download or a Hub repo's file list.

Published dictionaries come as trees: sparsify repos hold one folder per hookpoint
(`layers.16/cfg.json + sae.safetensors`), Gemma Scope one per layer, width and L0
(`layer_17/width_16k/average_l0_8/params.npz`), Llama Scope one per layer and site
(`Llama3_1-8B-Base-L15R-8x/hyperparams.json + checkpoints/final.safetensors`), SAELens
repos one per hook (`blocks.8.hook_resid_pre/cfg.json + sae_weights.safetensors`).
`find_dictionaries` lists the folders of a tree that hold a dictionary in a known format;
`select` keeps the one the user's `Selector` names, in the vocabulary of these trees, or
raises a `FormatError` that lists what is there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from ..errors import ConfigError, FormatError
from .formats import gemmascope

# Llama Scope site letters and the Gemma Scope repo suffixes, both mapped to one word per site.
_SITES = {"r": "res", "res": "res", "resid": "res", "resid_post": "res",
          "m": "mlp", "mlp": "mlp", "mlp_out": "mlp",
          "a": "att", "att": "att", "attn": "att", "attn_out": "att",
          "tc": "transcoder", "transcoder": "transcoder", "transcoders": "transcoder"}
SITES = ("res", "mlp", "att", "transcoder")


@dataclass(frozen=True)
class Selector:
    """Which dictionary of a tree, in the vocabulary of the trees people download. Unset fields select nothing."""

    hookpoint: str | None = None
    """A hookpoint folder (sparsify `layers.16`, SAELens `blocks.8.hook_resid_pre`); `resid_post.N`,
    `layers.N` and `blocks.N.hook_resid_post` name the same folder."""

    layer: int | None = None
    """Layer number: Gemma Scope `layer_17`, Llama Scope `L17R`, sparsify `layers.17`, SAELens `blocks.17.`."""

    width: str | None = None
    """Gemma Scope width (`16k`, or 16384), Llama Scope expansion (`8x`)."""

    l0: str | None = None
    """Gemma Scope: the `average_l0_*` nearest to this number, or `canonical`."""

    site: str | None = None
    """res | mlp | att | transcoder (Gemma Scope `--sae_type`, Llama Scope R / M / A / TC)."""

    def __post_init__(self) -> None:
        if self.site is not None and self.site.lower() not in _SITES:
            raise ConfigError(f"site: got {self.site!r}; expected one of {', '.join(SITES)} "
                              "(Llama Scope letters R, M, A, TC also work).")
        if self.l0 is not None and str(self.l0) != "canonical" and not _is_number(str(self.l0)):
            raise ConfigError(f"l0: got {self.l0!r}; expected a number (the nearest average_l0_* is taken) or "
                              "'canonical'.")
        if self.width is not None and _width_forms(str(self.width)) is None:
            raise ConfigError(f"width: got {self.width!r}; expected a latent count (16384), a Gemma Scope width "
                              "(16k, 1m) or a Llama Scope expansion (8x).")

    @property
    def empty(self) -> bool:
        return all(getattr(self, f) is None for f in ("hookpoint", "layer", "width", "l0", "site"))

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class Candidate:
    """A folder of a tree that holds one dictionary."""

    path: str
    """Folder relative to the tree's root, '' for the root itself (posix)."""

    format: str
    """The format its files match (a `coders.formats` NAME)."""

    files: tuple[str, ...]
    """The files that format needs, relative to the tree's root."""

    facts: dict = field(default_factory=dict)
    """What the path says: layer, width, l0, canonical, site, hookpoint folders."""

    def describe(self) -> str:
        return self.path or "."


def _is_number(text: str) -> bool:
    return re.fullmatch(r"\d+(\.\d+)?", text) is not None


def _width_forms(text: str) -> set[str] | None:
    """The spellings of a width a tree may use: 16384 -> {16384, 16k}; 16k -> {16k}; 8x -> {8x}."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+[km]|\d+x", text):
        return {text}
    if text.isdigit():
        n = int(text)
        return {text, f"{round(n / 1024)}k", f"{n // 1000}k", f"{round(n / 2**20)}m"}
    return None


def _canonical_hookpoint(name: str) -> str:
    """`layers.6`, `resid_post.6`, `blocks.6.hook_resid_post`, `model.layers.6` -> `resid_post.6`; else the name."""
    for pattern in (r"(?:model\.)?layers\.(\d+)", r"resid_post\.(\d+)", r"blocks\.(\d+)\.hook_resid_post"):
        m = re.fullmatch(pattern, name)
        if m:
            return f"resid_post.{m.group(1)}"
    return name


def path_facts(path: str, context: str = "") -> dict:
    """What a dictionary's folder path (and `context`, e.g. the repo id) says about it."""
    facts: dict = {"folders": path.split("/") if path else []}
    text = f"{context}/{path}"
    for pattern in (r"(?:^|/)layer_(\d+)(?:/|$)", r"-L(\d+)(?:R|M|A|TC|W)\b", r"(?:^|/|\.)layers\.(\d+)(?:\.|/|$)",
                    r"(?:^|/)blocks\.(\d+)\.", r"(?:^|/)layer(\d+)(?:/|$)"):
        m = re.search(pattern, text)
        if m:
            facts["layer"] = int(m.group(1))
            break
    if m := re.search(r"(?:^|/)width_(\d+[km]?)(?:/|$)", path):
        facts["width"] = m.group(1).lower()
    elif m := re.search(r"-(\d+x)(?:/|$)", path):
        facts["width"] = m.group(1).lower()
    if m := re.search(r"(?:^|/)average_l0_(\d+)(?:/|$)", path):
        facts["l0"] = int(m.group(1))
    if re.search(r"(?:^|/)canonical(?:/|$)", path):
        facts["canonical"] = True
    if m := re.search(r"-L\d+(R|M|A|TC)\b", path):
        facts["site"] = _SITES[m.group(1).lower()]
    elif m := gemmascope.RELEASE.search(text):
        facts["site"] = _SITES[m.group(3)]
    return facts


def find_dictionaries(files: Iterable[str], formats, context: str = "") -> list[Candidate]:
    """Every folder of a file listing (posix paths relative to the root) that holds all the files of a format.

    `formats` are the `coders.formats` modules in detection order; a folder is listed once, under the first
    format whose files it holds."""
    present = set(files)
    found: dict[str, Candidate] = {}
    for fmt in formats:
        for file_set in getattr(fmt, "FILE_SETS", (fmt.FILES,)):  # a format may have several layouts
            first = file_set[0]
            for f in sorted(present):
                if not (f == first or f.endswith("/" + first)):
                    continue
                folder = f[: -len(first)].rstrip("/")
                need = tuple(f"{folder}/{x}" if folder else x for x in file_set)
                if folder not in found and all(n in present for n in need):
                    found[folder] = Candidate(folder, fmt.NAME, need, path_facts(folder, context))
    return sorted(found.values(), key=lambda c: _natural(c.path))


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _matches(c: Candidate, sel: Selector) -> bool:
    f = c.facts
    if sel.hookpoint is not None:
        want = _canonical_hookpoint(sel.hookpoint)
        if not any(_canonical_hookpoint(folder) == want for folder in f["folders"]):
            return False
    if sel.layer is not None and f.get("layer") != sel.layer:
        return False
    if sel.width is not None and f.get("width") not in (_width_forms(str(sel.width)) or set()):
        return False
    if sel.site is not None and f.get("site") != _SITES[sel.site.lower()]:
        return False
    if sel.l0 is not None and str(sel.l0) == "canonical" and not f.get("canonical"):
        return False
    return True


def _nearest_l0(candidates: list[Candidate], target: float) -> list[Candidate]:
    """Among candidates that differ only by their average_l0 folder, the one nearest `target`."""
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        if "l0" in c.facts:
            groups.setdefault(re.sub(r"average_l0_\d+", "average_l0_*", c.path), []).append(c)
    return [min(g, key=lambda c: (abs(c.facts["l0"] - target), c.facts["l0"])) for g in groups.values()]


def _listing(candidates: list[Candidate], limit: int = 24) -> str:
    shown = ", ".join(c.describe() for c in candidates[:limit])
    return shown + (f", … ({len(candidates)} in all)" if len(candidates) > limit else "")


def _varying(candidates: list[Candidate]) -> str:
    """The selectors that would tell these candidates apart."""
    flags = {"layer": "--layer", "width": "--width", "l0": "--l0", "site": "--site"}
    varying = [flag for key, flag in flags.items() if len({c.facts.get(key) for c in candidates}) > 1]
    last_folders = {c.facts["folders"][-1] if c.facts["folders"] else "" for c in candidates}
    if not varying or len(last_folders) == len(candidates):  # a folder name tells them apart
        varying.append("--hookpoint (a folder name)")
    return ", ".join(varying)


def select(candidates: list[Candidate], sel: Selector, where: str) -> Candidate:
    """The one candidate `sel` names; FormatError listing what exists when none or several do."""
    if not candidates:
        raise FormatError(f"{where}: no dictionary in any known format found in this tree.")
    kept = [c for c in candidates if _matches(c, sel)]
    if sel.l0 is not None and str(sel.l0) != "canonical" and kept:
        kept = _nearest_l0(kept, float(sel.l0)) or kept
    if len(kept) == 1:
        return kept[0]
    if not kept:
        raise FormatError(f"{where}: no dictionary matches {_selector_text(sel)}; the tree holds "
                          f"{len(candidates)}: {_listing(candidates)}.")
    asked = f" matching {_selector_text(sel)}" if not sel.empty else ""
    raise FormatError(f"{where} holds {len(kept)} dictionaries{asked}: {_listing(kept)}; pick one with "
                      f"{_varying(kept)}.")


def _selector_text(sel: Selector) -> str:
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in sel.as_dict().items()) or "(no selector)"
