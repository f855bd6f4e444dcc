"""Layer sweep: at which layer, and on which text, do the base and target models diverge?

Per layer L (the residual stream after block L), over the valid positions of the windows:

- relative norm of the difference  E‖a_t − a_b‖ / E‖a_b‖ (also per group);
- mean cosine of a_t and a_b;
- linear CKA on a random sample of tokens, debiased (the unbiased HSIC estimator of
  Song et al. 2012, as recommended for CKA by Murphy et al. 2022): plain linear CKA
  (Kornblith et al. 2019) is biased towards 1 when the token count is not much larger
  than d. Both are stored: `cka` (debiased) and `cka_plain`.
- the increment: how much relative divergence layer L adds over layer L−1; the layer
  with the largest increment is `changed_layer`, where the models start to differ.

Per token, KL(P_target ‖ P_base) of the next-token distributions: the fine-tuned model is
the reference distribution, as in Minder et al. 2025 (arXiv 2504.02922), who measure how
far the chat model's predictions move when its activations are replaced. It is large
where the target model is confident of something the base model did not expect. The
per-group means and the top tokens with their context go to the report.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .._io import atomic_path, read_json, write_json
from ..activations.capture import ActivationReader
from ..data.tokens import TokenWindows
from ..errors import ArtifactError
from ..models.hookpoints import resolve_hookpoint
from ..models.load import LoadedModel
from ..progress import token_progress
from .pair import check_pair, valid_mask, window_groups

RESULT_NAME = "sweep.json"
KL_NAME = "kl.npy"
CUT_STEP, CUT_MAX = 16, 128
"""A batch whose valid positions fit in `CUT_MAX` is cut to a multiple of `CUT_STEP` positions, a longer one
runs whole: so cut, SmolLM2 in bf16 on CPU gives logits bit-identical to whole 256-position windows (measured;
cut longer, bf16 rounding moved some tokens' KL by up to 1 nat). Prompts are short, so this keeps most of the
saving."""


@dataclass
class SweepResult:
    """Where two models diverge, per layer and per token."""

    layers: list[int]
    """Decoder layers swept (residual stream after each block)."""
    rel_norm: list[float]
    """Per layer: E‖a_t − a_b‖ / E‖a_b‖ over valid positions."""
    cosine: list[float]
    """Per layer: mean cosine similarity of a_t and a_b."""
    cka: list[float]
    """Per layer: debiased linear CKA on `n_cka_tokens` sampled tokens."""
    cka_plain: list[float]
    """Per layer: plain linear CKA (Kornblith et al. 2019) on the same tokens."""
    increment: list[float]
    """Per layer: rel_norm[L] − rel_norm[L−1] (the first layer: rel_norm itself)."""
    changed_layer: int
    """The layer with the largest increment: where the divergence begins."""
    groups: list[str]
    """Group names: `corpus`, then the categories."""
    rel_norm_by_group: dict[str, list[float]]
    """Per group, per layer: relative norm of the difference."""
    kl_by_group: dict[str, float]
    """Per group: mean KL(P_target ‖ P_base) in nats over valid positions."""
    kl_mean: float
    """Mean KL over all valid positions (nats)."""
    top_kl: list[dict[str, Any]]
    """Tokens with the largest KL: window, pos, group, kl, token, context, base/target top prediction."""
    n_tokens: int
    """Valid positions measured."""
    n_cka_tokens: int
    kl: np.ndarray = field(repr=False)
    """float32 [n_windows, ctx_len]: KL at each position, NaN where excluded (stored as kl.npy)."""
    notes: dict[str, str] = field(default_factory=dict)

    def save(self, directory: str | Path) -> Path:
        """Write `sweep.json` and `kl.npy` into `directory`, atomically (the JSON last)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / KL_NAME) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, self.kl.astype(np.float32))
        write_json(directory / RESULT_NAME, {k: v for k, v in asdict(self).items() if k != "kl"})
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "SweepResult":
        directory = Path(directory)
        if not (directory / RESULT_NAME).exists():
            raise ArtifactError(f"no layer sweep at {directory} ({RESULT_NAME} missing): run layer_sweep first.")
        data = read_json(directory / RESULT_NAME)
        return cls(**data, kl=np.load(directory / KL_NAME))

    def layer_table(self) -> list[dict[str, float]]:
        """One row per layer (for reports and plots)."""
        return [{"layer": layer, "rel_norm": r, "increment": inc, "cosine": c, "cka": k, "cka_plain": kp}
                for layer, r, inc, c, k, kp in zip(self.layers, self.rel_norm, self.increment, self.cosine,
                                                   self.cka, self.cka_plain)]


def layer_sweep(base: LoadedModel, target: LoadedModel, windows: TokenWindows, layers: Sequence[int] | None = None,
                *, batch_size: int = 8, n_cka_tokens: int = 2048, top_k: int = 20, seed: int = 0,
                progress: bool = True) -> SweepResult:
    """Measure, layer by layer and token by token, how far `target` diverges from `base`.

    Both models run full forwards (the KL needs their logits) on the same windows, one
    batch at a time; memory holds one batch plus the CKA sample ([n_cka_tokens, d] per
    layer and model). A batch of short windows is cut after its last valid position
    (`CUT_MAX`): prompt windows are mostly right padding, which no valid position reads (the
    models are causal), so the numbers are those of whole windows at a fraction of the cost.

    Example:
        >>> sweep = layer_sweep(base, target, windows)
        >>> sweep.changed_layer, sweep.kl_by_group["corpus"]
    """
    layers = check_pair(base, target, layers)
    names, group = window_groups(windows)
    mask = valid_mask(windows)
    acc = _Accumulator(len(layers), len(names), base.d_model)
    sample = _sample_positions(mask, n_cka_tokens, seed)
    kl = np.full(tuple(windows.tokens.shape), np.nan, dtype=np.float32)
    preds = np.zeros((2, *windows.tokens.shape), dtype=np.int64)  # base, target top next token
    with token_progress(windows.n_tokens, "layer sweep", enabled=progress) as advance:
        for lo in range(0, windows.n_windows, batch_size):
            hi = min(lo + batch_size, windows.n_windows)
            t = _cut_length(mask[lo:hi])
            tokens = windows.tokens[lo:hi, :t].long()  # [b, t]
            (acts_b, logits_b), (acts_t, logits_t) = (_forward(lm, tokens, layers) for lm in (base, target))
            m = mask[lo:hi, :t]
            g = torch.from_numpy(group[lo:hi])[:, None].expand_as(m)[m]  # [n]
            for i in range(len(layers)):
                acc.add(i, acts_b[i][m], acts_t[i][m], g)
                acc.add_sample(i, acts_b[i], acts_t[i], sample[lo:hi, :t])
            kl_batch, preds[0, lo:hi, :t], preds[1, lo:hi, :t] = _kl(logits_t, logits_b)  # [b, t] each
            kl_batch[~m] = float("nan")
            kl[lo:hi, :t] = kl_batch.numpy()
            advance((hi - lo) * windows.ctx_len)
    rel = acc.rel_norm()
    increment = [rel[0]] + [rel[i] - rel[i - 1] for i in range(1, len(rel))]
    valid_kl = np.nan_to_num(kl, nan=0.0)
    counts = np.array([mask[torch.from_numpy(group == gi)].sum().item() for gi in range(len(names))])
    sums = np.array([valid_kl[group == gi].sum() for gi in range(len(names))])
    ckas = [_cka(x, y) for x, y in acc.samples()]
    return SweepResult(
        layers=layers, rel_norm=rel, cosine=acc.cosine(), cka=[c[0] for c in ckas], cka_plain=[c[1] for c in ckas],
        increment=increment, changed_layer=layers[int(np.argmax(increment))], groups=names,
        rel_norm_by_group={n: acc.rel_norm(gi) for gi, n in enumerate(names)},
        kl_by_group={n: float(sums[gi] / counts[gi]) if counts[gi] else float("nan") for gi, n in enumerate(names)},
        kl_mean=float(np.nanmean(kl)), top_kl=_top_tokens(kl, windows, names, group, preds, base.tokenizer, top_k),
        n_tokens=int(mask.sum()), n_cka_tokens=int(sample.sum()), kl=kl,
        notes={"kl": "KL(P_target || P_base) in nats, the target model as reference (Minder et al. 2025)",
               "cka": "debiased linear CKA (unbiased HSIC, Song et al. 2012); cka_plain: Kornblith et al. 2019",
               "layers": "residual stream after each decoder block (resid_post.L)",
               "excluded": ", ".join([*windows.config.exclude, "pad"])},
    )


def _cut_length(mask: torch.Tensor) -> int:
    """Positions a batch runs on (mask: bool [b, T]): up to its last valid one rounded up to a multiple of
    `CUT_STEP` when that is at most `CUT_MAX`, else all T."""
    cols = torch.nonzero(mask.any(0)).flatten()
    n = -(-(int(cols[-1]) + 1 if cols.numel() else 1) // CUT_STEP) * CUT_STEP
    return n if n <= CUT_MAX else mask.shape[1]


@torch.inference_mode()
def _forward(lm: LoadedModel, tokens: torch.Tensor, layers: list[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """([b, T, d] float32 on CPU per layer, [b, T, vocab] float32 logits) of one full forward."""
    hooks = [resolve_hookpoint(lm.model, f"resid_post.{layer}") for layer in layers]
    reader = ActivationReader(lm.model, hooks, stop_early=False)
    store: dict[str, torch.Tensor] = {}
    with reader.capturing(store):
        logits = lm.model(input_ids=tokens.to(lm.device), use_cache=False).logits
    return [store[h.name].float().cpu() for h in hooks], logits.float().cpu()


def _kl(logits_t: torch.Tensor, logits_b: torch.Tensor) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """KL(P_t ‖ P_b) [b, T] and both models' top next token [b, T], one window at a time (memory)."""
    kl = torch.empty(logits_t.shape[:2])
    for w in range(logits_t.shape[0]):
        lt, lb = torch.log_softmax(logits_t[w], -1), torch.log_softmax(logits_b[w], -1)  # [T, V]
        kl[w] = (lt.exp() * (lt - lb)).sum(-1).clamp_min(0)
    return kl, logits_b.argmax(-1).numpy(), logits_t.argmax(-1).numpy()


class _Accumulator:
    """Running float64 sums per layer (and per group) over valid positions, and the CKA sample."""

    def __init__(self, n_layers: int, n_groups: int, d: int):
        self.diff = np.zeros((n_layers, n_groups))
        self.norm = np.zeros((n_layers, n_groups))
        self.cos = np.zeros(n_layers)
        self.n = 0
        self.xs: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
        self.ys: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]

    def add(self, i: int, b: torch.Tensor, t: torch.Tensor, group: torch.Tensor) -> None:
        """b, t: [n, d]; group: [n]."""
        b, t = b.double(), t.double()
        self.diff[i] += np.bincount(group.numpy(), (t - b).norm(dim=-1).numpy(), minlength=self.diff.shape[1])
        self.norm[i] += np.bincount(group.numpy(), b.norm(dim=-1).numpy(), minlength=self.norm.shape[1])
        self.cos[i] += float(torch.nn.functional.cosine_similarity(b, t, dim=-1).sum())
        if i == 0:
            self.n += b.shape[0]

    def add_sample(self, i: int, b: torch.Tensor, t: torch.Tensor, picked: torch.Tensor) -> None:
        self.xs[i].append(b[picked])
        self.ys[i].append(t[picked])

    def rel_norm(self, group: int | None = None) -> list[float]:
        d, n = (self.diff.sum(1), self.norm.sum(1)) if group is None else (self.diff[:, group], self.norm[:, group])
        return [float(a / b) if b else float("nan") for a, b in zip(d, n)]

    def cosine(self) -> list[float]:
        return [float(c / max(self.n, 1)) for c in self.cos]

    def samples(self):
        for xs, ys in zip(self.xs, self.ys):
            yield torch.cat(xs).double(), torch.cat(ys).double()


def _sample_positions(mask: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """bool like `mask`: up to `n` valid positions drawn uniformly (the CKA sample)."""
    idx = torch.nonzero(mask.flatten()).squeeze(1)
    g = torch.Generator().manual_seed(seed)
    chosen = idx[torch.randperm(idx.numel(), generator=g)[:n]]
    out = torch.zeros(mask.numel(), dtype=torch.bool)
    out[chosen] = True
    return out.view(mask.shape)


def _cka(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(debiased, plain) linear CKA of x, y: [n, d]."""
    x, y = x - x.mean(0), y - y.mean(0)  # centring leaves both estimators unchanged, and helps precision
    k, l = (x.float() @ x.float().T).double(), (y.float() @ y.float().T).double()  # [n, n] linear kernels
    return _hsic_ratio(k, l, _hsic_unbiased), _hsic_ratio(k, l, _hsic_plain)


def _hsic_ratio(k: torch.Tensor, l: torch.Tensor, hsic) -> float:
    denom = math.sqrt(max(hsic(k, k) * hsic(l, l), 0.0))
    return float(hsic(k, l) / denom) if denom > 0 else float("nan")


def _hsic_plain(k: torch.Tensor, l: torch.Tensor) -> float:
    """tr(HKHL) up to a constant; O(n²) with the centring written out."""
    kc = k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()
    return float((kc * l).sum())


def _hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> float:
    """Song et al. 2012, eq. 5: the kernels with zeroed diagonals; needs n > 3."""
    n = k.shape[0]
    if n < 4:
        return float("nan")
    k, l = k.clone().fill_diagonal_(0), l.clone().fill_diagonal_(0)
    # tr(KL) = Σ K∘L for symmetric kernels and 1ᵀKL1 = (K1)ᵀ(L1): O(n²), no n³ product
    term = (k * l).sum() + k.sum() * l.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k.sum(1) @ l.sum(0))
    return float(term / (n * (n - 3)))


def _top_tokens(kl: np.ndarray, windows: TokenWindows, names: list[str], group: np.ndarray,
                preds: dict, tokenizer: Any, k: int, context: int = 24) -> list[dict[str, Any]]:
    """The `k` positions with the largest KL, with the text before them and both models' guesses."""
    flat = np.nan_to_num(kl, nan=-1.0).ravel()
    order = np.argsort(-flat)[:k]
    out = []
    for f in order:
        if flat[f] < 0:
            break
        w, p = divmod(int(f), kl.shape[1])
        ids = windows.tokens[w, max(0, p - context) : p + 1].tolist()
        pb, pt = int(preds[0, w, p]), int(preds[1, w, p])
        out.append({"window": w, "pos": p, "group": names[group[w]], "kl": float(kl[w, p]),
                    "token": tokenizer.decode([ids[-1]]), "context": tokenizer.decode(ids[:-1]),
                    "base_next": tokenizer.decode([pb]), "target_next": tokenizer.decode([pt])})
    return out
