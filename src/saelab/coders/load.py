"""`load_dictionary`: read any supported format, from the workspace, a path or the Hub; `describe_dictionary`."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import FormatError
from .base import SparseCoder
from .formats import FORMATS
from .resolve import ResolvedDictionary, Selector, detect_format, resolve_dictionary

log = logging.getLogger(__name__)


def resolve_dictionary_path(path: str | os.PathLike, hookpoint: str | None = None) -> Path:
    """The directory or file that holds one dictionary under a local `path` (a tree's root: `hookpoint`
    picks the sub-directory). Raises FormatError listing what exists."""
    if not Path(path).exists():
        raise FormatError(f"dictionary path {str(path)!r} does not exist.")
    return resolve_dictionary(path, selector=Selector(hookpoint=hookpoint)).path


def load_resolved(resolved: ResolvedDictionary, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                  site: str | None = None) -> SparseCoder:
    """Load the dictionary `resolve_dictionary` found; its cfg.extra["source"] says where it came from."""
    fmt = resolved.format or detect_format(resolved.path)
    if fmt is None:
        raise FormatError(f"{resolved.path}: not a dictionary in any known format.")
    kwargs: dict[str, Any] = {}
    if site == "transcoder" and "kind" in inspect.signature(fmt.load).parameters:
        kwargs["kind"] = "transcoder"
    coder = fmt.load(resolved.path, device=device, dtype=dtype, **kwargs)
    coder.source = resolved.source  # type: ignore[attr-defined]  # read by the stages that record it
    if resolved.source.get("kind") in ("hub", "saelens"):  # kept when the dictionary is saved again
        coder.cfg = dataclasses.replace(coder.cfg, extra={**coder.cfg.extra, "source": resolved.source})
    log.info("loaded %s dictionary from %s: %s", fmt.NAME, resolved.path, coder.extra_repr())
    return coder.eval()


def load_dictionary(spec: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                    hookpoint: str | None = None, *, selector: Selector | None = None, workspace: Any = None,
                    cache_dir: str | os.PathLike | None = None) -> SparseCoder:
    """Load a sparse dictionary in saelab's native format, SAELens, Gemma Scope, Llama Scope, sparsify,
    dictionary_learning or a published crosscoder layout; the format is detected from the files.

    Args:
        spec: a dictionary directory or file, the root of a downloaded tree, a Hub repo
            (`org/repo[/path][@revision]`, `hf://` optional), `saelens:RELEASE/ID`, or (with
            `workspace`) a dictionary name of that workspace.
        device, dtype: where to put the weights; dtype None keeps the stored dtype.
        hookpoint: the hookpoint folder to read in a tree with several (sparsify runs and repos).
        selector: the other selectors of a tree (layer, width, l0, site); `hookpoint` fills its hookpoint.
        workspace: a `Workspace` whose dictionaries are looked up first.
        cache_dir: Hugging Face cache for downloads (default: HF_HUB_CACHE / HF_HOME).

    Example:
        >>> coder = load_dictionary("runs/sparsify", hookpoint="layers.6")
        >>> coder = load_dictionary("EleutherAI/sae-SmolLM2-135M-64x", hookpoint="layers.6")
        >>> latents = coder.encode(x)   # x [N, d_in] -> [N, d_sae]
    """
    sel = selector or Selector()
    if hookpoint is not None:
        sel = dataclasses.replace(sel, hookpoint=hookpoint)
    resolved = resolve_dictionary(spec, workspace=workspace, selector=sel, cache_dir=cache_dir)
    return load_resolved(resolved, device=device, dtype=dtype, site=sel.site)


def load_crosscoder(spec: str | os.PathLike, n_sources: int = 2, arg: str = "crosscoder") -> SparseCoder:
    """A crosscoder with `n_sources` sources in any format `load_dictionary` reads (saelab's own,
    dictionary_learning's CrossCoder, crosscoder-model-diff-replication, …), given as its directory,
    one of its files (e.g. its weights.safetensors), or its Hub repo `org/name[/path][@revision]`.
    `coder.source_path` says where it was read from; errors name `arg`.

    Example:
        >>> coder = load_crosscoder("diff-run/features/layer_15/crosscoder")
        >>> coder.cfg.kind, coder.cfg.n_sources
        ('crosscoder', 2)
    """
    from .hub import parse_hub_spec

    def known(q: Path) -> bool:
        return q.exists() and any(fmt.detect(q) for fmt in FORMATS)

    p, text = Path(spec), str(spec)
    on_hub = text.startswith(("hf://", "saelens:")) or (parse_hub_spec(text) and not text.startswith((".", "/", "~")))
    if not p.exists() and on_hub:
        coder = load_dictionary(text)  # a Hub repo: downloaded into HF's cache
        where = text
    elif not known(where := p.parent if p.is_file() and not known(p) else p):  # e.g. weights.safetensors: its dir
        raise FormatError(f"{arg}: {text!r} is not a saved crosscoder in a format saelab reads; give the "
                          "directory a diff run wrote (features/layer_LL/crosscoder), SparseCoder.save wrote, or a "
                          "published crosscoder (dictionary_learning CrossCoder: config.json + model.safetensors; "
                          "crosscoder-model-diff-replication: cfg.json + cc_weights.pt), or its Hub repo "
                          "org/name[/path].")
    else:
        coder = load_dictionary(where)
    if coder.cfg.kind != "crosscoder" or coder.cfg.n_sources != n_sources:
        raise FormatError(f"{arg}: {text!r} holds a {coder.cfg.kind} with {coder.cfg.n_sources} source(s); a model "
                          f"diff needs a crosscoder with {n_sources} sources (base, target).")
    coder.source_path = str(where)  # type: ignore[attr-defined]
    return coder


def describe_dictionary(spec: str | os.PathLike, hookpoint: str | None = None, *,
                        selector: Selector | None = None, workspace: Any = None) -> dict[str, Any]:
    """What a dictionary is: architecture, kind, widths, k, hookpoints, source format, model, parameter count,
    and where it came from."""
    sel = dataclasses.replace(selector or Selector(), **({"hookpoint": hookpoint} if hookpoint else {}))
    resolved = resolve_dictionary(spec, workspace=workspace, selector=sel)
    coder = load_resolved(resolved, device="cpu", site=sel.site)
    c = coder.cfg
    return {
        "path": str(resolved.path),
        "architecture": c.architecture, "kind": c.kind, "d_in": c.d_in, "d_sae": c.d_sae, "d_out": coder.d_out,
        "k": c.k, "n_sources": c.n_sources, "hookpoint": c.hookpoint, "out_hookpoint": c.out_hookpoint,
        "source_format": c.source_format, "model": c.model, "skip": c.skip,
        "apply_b_dec_to_input": c.apply_b_dec_to_input, "group_sizes": c.group_sizes,
        "dtype": str(coder.dtype).removeprefix("torch."),
        "n_params": sum(p.numel() for p in coder.parameters()),
        "source": resolved.source,
    }
