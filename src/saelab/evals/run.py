"""The `evals` stage: `run_eval` (one dictionary) and `compare` (two, on the same tokens).

A result records what it was computed from (the dictionaries' weights by `dictionary_hash`, the
settings, the model's weights, the token windows) in its cfg.json, written last: a rerun of the
same evaluation reads the stored result back; one of other inputs is refused without `overwrite`,
naming the difference. The output directory is locked while it is written.

Under torchrun every rank loads the dictionaries and evaluates its block of the windows (see
`evaluate_many`; a dense baseline's moments are summed the same way); rank 0 alone holds the lock,
decides whether a stored result is reused, and writes the files, while the others wait at a barrier.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from .._io import cfg_matches, read_json, write_cfg, write_json, write_text
from ..activations.fits import check_dictionary_fits
from ..activations.stream import StreamConfig, stream_activations
from ..coders import Selector, load_resolved, resolve_dictionary
from ..data.tokens import TokenWindows
from ..distributed import barrier, is_main, on_main, sum_over_ranks
from ..errors import ArtifactError, ConfigError
from ..latents.manifest import dictionary_hash
from ..lock import hold_directory
from ..models.hookpoints import resolve_hookpoint
from ..models.load import LoadedModel
from ..workspace import Workspace, difference
from . import plots
from .config import EvalConfig
from .evaluate import eval_window_range, evaluate_many, rank_batches
from .reconstructors import CoderReconstructor, DenseBaseline, Reconstructor, parse_dense_spec
from .summary import comparison_rows, comparison_text, summary_text

log = logging.getLogger(__name__)


def load_reconstructor(spec: str, workspace: Workspace, device: torch.device,
                       selector: Selector | None = None) -> Reconstructor:
    """A dictionary of the workspace, a path, a tree (with `selector`) or a Hub repo, as a Reconstructor."""
    resolved = resolve_dictionary(spec, workspace=workspace, selector=selector)
    return CoderReconstructor(load_resolved(resolved, device=device, site=(selector or Selector()).site),
                              resolved.name)


def dictionary_source(rec: Reconstructor) -> dict[str, Any] | None:
    """Where a reconstructor's dictionary came from (spec, repo, commit, path), for cfg.json."""
    return getattr(getattr(rec, "coder", None), "source", None)


def fit_dense_baseline(spec: str, ref: Reconstructor, lm: LoadedModel, windows: TokenWindows, config: EvalConfig,
                       progress: bool = True) -> DenseBaseline:
    """`dense:pca[:K]` or `dense:linear`, fitted on the windows just before the evaluated ones.

    PCA's K defaults to the reference dictionary's L0 on the fit windows (rounded).
    """
    method, k = parse_dense_spec(spec, ref.d_in)
    first, stop = eval_window_range(config, windows)
    n_fit = min(first, stop - first)
    if n_fit < 1:
        raise ConfigError("dense baseline: no windows before the evaluated ones to fit it on; "
                          "rebuild the token windows with a larger budget (--n-tokens).")
    if getattr(ref, "coder", None) is not None:
        check_dictionary_fits(ref.coder, lm, ref.name)  # before the baseline's fitting forwards
    hp_in, hp_out = resolve_hookpoint(lm.model, ref.hookpoint), resolve_hookpoint(lm.model, ref.out_hookpoint)
    base = DenseBaseline(method, ref.hookpoint, ref.out_hookpoint, ref.d_in, k=k)
    l0_sum, l0_n = 0, 0  # active latents, tokens: exact counts
    start, stop = rank_batches(first - n_fit, first, config.batch_size)  # this rank's share under torchrun
    for batch in stream_activations(lm, windows, [hp_in, hp_out], StreamConfig(config.batch_size, start, stop),
                                    progress=progress and is_main()):
        mask = batch.mask.to(lm.device)
        x, y = batch.acts[hp_in.name][mask].float(), batch.acts[hp_out.name][mask].float()
        base.accumulate(x, x if base.method == "pca" else y)
        if base.method == "pca" and base.k is None:
            z, _ = ref(x)
            l0_sum, l0_n = l0_sum + int((z != 0).sum()), l0_n + x.shape[0]
    base.all_reduce()
    if base.method == "pca" and base.k is None:
        l0_sum, l0_n = sum_over_ranks(torch.tensor([l0_sum, l0_n], dtype=torch.int64)).tolist()
        base.k = max(1, round(l0_sum / max(l0_n, 1)))
        base.name = f"pca-{base.k}"
    return base.fit()


def _annotate(m: dict[str, Any], rec: Reconstructor, windows: TokenWindows) -> dict[str, Any]:
    m["excluded"] = list(windows.config.exclude)
    m["tokens_hash"] = windows.tokens_hash
    m["warnings"] = []
    train = getattr(getattr(rec, "coder", None), "cfg", None)
    trained_on = (train.extra.get("training", {}) if train else {}).get("windows")
    if trained_on and trained_on[0] < m["windows"][1] and m["windows"][0] < trained_on[1]:
        m["warnings"].append(f"the evaluated windows {m['windows']} overlap the training windows {trained_on}: "
                             "these are not held-out figures")
    if train is not None and (record := train.extra.get("training")):
        m["training"] = training_record(record)
    return m


def training_record(record: dict[str, Any]) -> dict[str, Any]:
    """What a saelab-trained dictionary's cfg.json says about its training: how long, and whether it moved."""
    final = record.get("final") or {}
    config = record.get("train_config") or {}
    return {"steps": record.get("steps"), "tokens_seen": record.get("tokens_seen"),
            "epochs": config.get("epochs", 1.0), "training_fvu": final.get("fvu"),
            "heldout_fvu": final.get("heldout_fvu"), "decoder_cos_init": final.get("decoder_cos_init")}


def _absorption(rec: Reconstructor, lm: LoadedModel, progress: bool) -> dict[str, Any]:
    coder = getattr(rec, "coder", None)
    if coder is None or coder.cfg.kind != "sae":
        return {"not_applicable": "absorption is defined for SAEs (a latent basis of one hookpoint)"}
    from .absorption import AbsorptionConfig, run_absorption

    return run_absorption(lm, coder, AbsorptionConfig(), progress=progress)


def run_eval(spec: str, workspace: Workspace, lm: LoadedModel, windows: TokenWindows,
             config: EvalConfig = EvalConfig(), out_dir: Path | None = None, progress: bool = True,
             selector: Selector | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Evaluate one dictionary; write metrics.json, summary.txt, cfg.json to `workspace/evals/NAME/`.

    `spec` is a workspace name, a path, or a Hub repo; `selector` picks one dictionary of a tree. An evaluation
    of the same weights, settings, model and tokens already in the directory is read back (`reused: True`); one
    of other inputs is refused unless `overwrite`."""
    rec = load_reconstructor(spec, workspace, lm.device, selector)
    out = out_dir or workspace.evals(rec.name)
    want = {"artifact": "evals", "dictionary_hash": dictionary_hash(rec.coder), "config": dataclasses.asdict(config),
            "model": _model_identity(lm), "tokens_hash": windows.tokens_hash}
    with _lock(workspace, out):
        stored = on_main(lambda: _stored_eval(out, want, overwrite, f"the evaluation of {spec}"))
        if stored is not None:
            return stored
        m = _annotate(evaluate_many([rec], lm, windows, config, progress)[0], rec, windows)
        if "absorption" in config.metrics:  # every rank: its own prompts, not shared out
            m["absorption"] = _absorption(rec, lm, progress and is_main())
        text = summary_text(m)
        if is_main():
            write_json(out / "metrics.json", m)
            write_text(out / "summary.txt", text)
            write_cfg(out, {**want, "dictionary": spec, "dictionary_source": dictionary_source(rec),  # last: whole
                            "model_path": lm.path, "model_description": lm.describe()})
        barrier()
    m["summary_text"], m["out_dir"], m["reused"] = text, str(out), False
    return m


def _model_identity(lm: LoadedModel) -> dict[str, Any]:
    """The model by its weights, not its path: a moved model cache is the same model."""
    return {**{k: v for k, v in lm.describe().items() if k != "path"}, "weights": lm.weights_hash}


def _lock(workspace: Workspace, out: Path) -> contextlib.AbstractContextManager[Any]:
    """The lock of an output directory: the workspace's for `evals/NAME`, else `out/.lock`; held by rank 0 alone
    under torchrun."""
    if not is_main():
        return contextlib.nullcontext()
    if out.parent == workspace.root / "evals":
        return workspace.lock("evals", out.name)
    return hold_directory(out)


def _stored_eval(out: Path, want: dict[str, Any], overwrite: bool, what: str) -> dict[str, Any] | None:
    """The evaluation stored in `out` when it was made from `want` (and not `overwrite`); None when there is none
    to keep (or it is to be replaced: its cfg.json goes first, so a half-rewritten result never reads as whole);
    an ArtifactError naming the difference when it was made from other inputs."""
    cfg = out / "cfg.json"
    if not cfg.exists():
        return None
    if not overwrite and cfg_matches(out, want):
        try:
            m = read_json(out / "metrics.json")
            m["summary_text"], m["out_dir"], m["reused"] = (out / "summary.txt").read_text(), str(out), True
        except (OSError, ValueError):
            m = None
        if m is not None:
            log.info("evals: %s holds this evaluation already (same weights, settings and tokens); reusing it", out)
            return m
    elif not overwrite:
        raise ArtifactError(f"{out} holds {what} made from other inputs ({difference(read_json(cfg), want)}); keep it "
                            "and write elsewhere (--out), or replace it with --overwrite.")
    cfg.unlink()
    return None


def _stored_comparison(out_dir: Path, want: dict[str, Any]) -> dict[str, Any] | None:
    """The comparison written in `out_dir` when its cfg.json matches `want` on every key, else None."""
    if not cfg_matches(out_dir, want):
        return None
    try:
        names = read_json(out_dir / "cfg.json")["names"]
        ma, mb = (read_json(out_dir / f"{_safe(n)}_metrics.json") for n in names)
        rows = read_json(out_dir / "comparison.json")["rows"]
        text = (out_dir / "summary.txt").read_text()
    except (OSError, KeyError, ValueError):
        return None
    return {"a": ma, "b": mb, "rows": rows, "summary_text": text, "out_dir": str(out_dir), "reused": True}


def compare(spec_a: str, spec_b: str, workspace: Workspace, lm: LoadedModel, windows: TokenWindows,
            out_dir: Path, config: EvalConfig = EvalConfig(), names: tuple[str, str] | None = None,
            progress: bool = True, resume: bool = True, selector: Selector | None = None,
            overwrite: bool = False) -> dict[str, Any]:
    """Evaluate two dictionaries (or a dictionary and `dense:pca` / `dense:linear`) on the same tokens.

    A comparison already in `out_dir` of the same dictionaries (by `dictionary_hash`, the identity the latent
    store uses), settings, model and tokens is read back instead of recomputed (the result then has
    `reused: True`); one of other inputs is refused, naming the difference, unless `overwrite`.
    `resume=False` (older callers) is `overwrite=True`."""
    overwrite = overwrite or not resume
    a = load_reconstructor(spec_a, workspace, lm.device, selector)
    if spec_b.startswith("dense:"):
        parse_dense_spec(spec_b, a.d_in)  # refused before a stored comparison is looked for
    b_dict = None if spec_b.startswith("dense:") else load_reconstructor(spec_b, workspace, lm.device, selector)
    hashes = [dictionary_hash(a.coder), None if b_dict is None else dictionary_hash(b_dict.coder)]
    want = {"artifact": "comparison", "a": spec_a, "b": spec_b, "dictionary_hashes": hashes,
            "config": dataclasses.asdict(config), "model": _model_identity(lm), "tokens_hash": windows.tokens_hash,
            **({"names": list(names)} if names else {})}
    with _lock(workspace, out_dir):
        stored = on_main(lambda: _stored_or_cleared(out_dir, want, overwrite))
        if stored is not None:
            return stored
        return _compare_locked(a, b_dict, spec_b, lm, windows, out_dir, config, names, progress, want)


def _stored_or_cleared(out_dir: Path, want: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The comparison in `out_dir` when it was made from `want` (and not `overwrite`); else None, with a
    comparison of other inputs refused (without `overwrite`) or unmarked as whole (with it)."""
    stored = None if overwrite else _stored_comparison(out_dir, want)
    if stored is not None:
        log.info("evals: %s holds this comparison already (same weights, settings and tokens); reusing it", out_dir)
        return stored
    if (out_dir / "cfg.json").exists():
        if not overwrite:
            raise ArtifactError(f"{out_dir} holds a comparison made from other inputs "
                                f"({difference(read_json(out_dir / 'cfg.json'), want)}); keep it and write "
                                "elsewhere (--output-dir), or replace it with --overwrite.")
        (out_dir / "cfg.json").unlink()  # first: a half-rewritten comparison never reads as whole
    return None


def _compare_locked(a: Reconstructor, b_dict: Reconstructor | None, spec_b: str, lm: LoadedModel,
                    windows: TokenWindows, out_dir: Path, config: EvalConfig, names: tuple[str, str] | None,
                    progress: bool, want: dict[str, Any]) -> dict[str, Any]:
    b = fit_dense_baseline(spec_b, a, lm, windows, config, progress) if b_dict is None else b_dict
    names = names or (a.name, b.name)
    if len(set(names)) < 2:
        names = (f"{names[0]} (a)", f"{names[1]} (b)")
    ma, mb = (_annotate(m, r, windows) for m, r in zip(evaluate_many([a, b], lm, windows, config, progress), (a, b)))
    if "absorption" in config.metrics:  # every rank: its own prompts, not shared out
        show = progress and is_main()
        ma["absorption"], mb["absorption"] = _absorption(a, lm, show), _absorption(b, lm, show)
    rows = comparison_rows(ma, mb)
    text = comparison_text(names, rows, ma)
    if is_main():
        _write_comparison(out_dir, names, ma, mb, rows, text)
        sources = [dictionary_source(a), None if b_dict is None else dictionary_source(b_dict)]
        write_cfg(out_dir, {**want, "names": list(names), "model_path": lm.path,  # last: the comparison is whole
                            "dictionary_sources": sources})
    barrier()
    return {"a": ma, "b": mb, "rows": rows, "summary_text": text, "out_dir": str(out_dir), "reused": False}


def _write_comparison(out_dir: Path, names: tuple[str, str], ma: dict[str, Any], mb: dict[str, Any],
                      rows: list[dict[str, Any]], text: str) -> None:
    write_json(out_dir / f"{_safe(names[0])}_metrics.json", ma)
    write_json(out_dir / f"{_safe(names[1])}_metrics.json", mb)
    write_json(out_dir / "comparison.json", {"a": names[0], "b": names[1], "rows": rows})
    write_text(out_dir / "summary.txt", text)
    results = {names[0]: ma, names[1]: mb}
    plots.fvu_vs_l0(results, out_dir / "fvu_vs_l0.png")
    plots.frequency_histograms(results, out_dir / "firing_frequency.png")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
