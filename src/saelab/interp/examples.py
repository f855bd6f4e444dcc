"""Examples of a latent, cut from the latent store.

The store's windows (ctx_len tokens) are cut into chunks of `example_ctx_len` tokens; a chunk
where the latent fires is an activating chunk. Training examples (for the explainer) and test
examples (for scoring) are drawn from DISJOINT chunks, and a centred test example never
shares a token with a centred training example. Non-activating examples are chunks where the
latent never fires, from a `negatives` source.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._io import read_json
from ..data.tokens import TokenWindows
from ..latents.store import LatentStore
from .config import ExampleConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """A span of one store window, with the latent's activation at every token."""

    window: int
    start: int
    """first position of the span in the store window"""
    tokens: list[int]
    """int [example_ctx_len] token ids"""
    activations: list[float]
    """float [example_ctx_len]: the latent's activation at each token (0 where silent)"""
    chunk: int
    """the chunk id (window · chunks_per_window + position // example_ctx_len) it was drawn from"""
    quantile: int = -1
    """activation quantile group (0 = weakest) of an activating example; −1 for non-activating ones"""

    @property
    def max_activation(self) -> float:
        return max(self.activations) if self.activations else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Example":
        return cls(**d)


@dataclass(frozen=True)
class LatentExamples:
    """Everything one latent needs: training, test and non-activating examples."""

    latent: int
    n_activating: int
    """activating chunks in the store"""
    train: list[Example]
    test: list[Example]
    non_activating: list[Example]
    non_activating_source: str
    """where the non-activating examples came from (a source can fall back to `random`)"""
    train_non_activating: list[Example] = field(default_factory=list)
    """non-activating examples the contrastive explainer may see (never among the scored ones)"""

    def to_dict(self) -> dict[str, Any]:
        return {"latent": self.latent, "n_activating": self.n_activating,
                "non_activating_source": self.non_activating_source,
                **{k: [e.to_dict() for e in getattr(self, k)] for k in _LISTS}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LatentExamples":
        lists = {k: [Example.from_dict(e) for e in d[k]] for k in _LISTS}
        return cls(d["latent"], d["n_activating"], non_activating_source=d["non_activating_source"], **lists)


_LISTS = ("train", "test", "non_activating", "train_non_activating")


class ExampleFiles(Mapping[int, LatentExamples]):
    """{latent: LatentExamples} read from `directory/<latent>.json` when asked, in the order given: a run over
    thousands of latents holds one latent's examples at a time, not all of them (~0.3 MB per latent at the
    default 40 + 50 + 50 examples: 5 GB for 16,384 latents).

    Example:
        >>> items = ExampleFiles(Path("interp/full/examples"), [3, 7])
        >>> items[3].train[0].tokens
    """

    def __init__(self, directory: Path, latents: Iterable[int]) -> None:
        self.directory = Path(directory)
        self._latents = [int(l) for l in latents]
        self._known = set(self._latents)

    def __getitem__(self, latent: int) -> LatentExamples:
        if latent not in self._known:
            raise KeyError(latent)
        return LatentExamples.from_dict(read_json(self.directory / f"{latent}.json"))

    def __contains__(self, latent: object) -> bool:
        return latent in self._known

    def __iter__(self) -> Iterator[int]:
        return iter(self._latents)

    def __len__(self) -> int:
        return len(self._latents)


class Chunks(NamedTuple):
    """The activating chunks of one latent, weakest first."""

    ids: np.ndarray
    """int64 [n] chunk ids, ordered by (max activation, id)"""
    peak: np.ndarray
    """int64 [n] position (in the store window) of each chunk's maximum"""
    values: np.ndarray
    """float32 [n] each chunk's maximum"""


class Activations(NamedTuple):
    """The latent's entries, kept to fill in example activations without re-reading the store."""

    windows: np.ndarray
    positions: np.ndarray
    values: np.ndarray


def latent_activations(store: LatentStore, windows: TokenWindows, latent: int, filter_bos: bool) -> Activations:
    e = store.activations(latent)
    keep = e.values > 0
    if filter_bos:
        special = set(windows.special_ids) | ({windows.bos_id} if windows.bos_id is not None else set())
        if special:
            tok = windows.tokens.numpy()[e.windows, e.positions]
            keep &= ~np.isin(tok, list(special))
    return Activations(e.windows[keep], e.positions[keep], e.values[keep])


def activating_chunks(acts: Activations, ctx_len: int, length: int) -> Chunks:
    """Each chunk where the latent fires, with its maximum and where it is reached."""
    per = ctx_len // length
    inside = acts.positions < per * length  # a partial tail chunk is not used
    chunk = acts.windows[inside] * per + acts.positions[inside] // length
    pos, val = acts.positions[inside], acts.values[inside]
    order = np.lexsort((pos, -val, chunk))  # per chunk: maximum first (first position on ties)
    chunk, pos, val = chunk[order], pos[order], val[order]
    first = np.r_[True, chunk[1:] != chunk[:-1]] if chunk.size else np.zeros(0, bool)
    ids, peak, values = chunk[first], pos[first], val[first]
    by_value = np.lexsort((ids, values))
    return Chunks(ids[by_value], peak[by_value], values[by_value].astype(np.float32))


def span_start(chunk: int, peak: int, ctx_len: int, length: int, center: bool) -> int:
    per = ctx_len // length
    if not center:
        return (chunk % per) * length
    return int(np.clip(peak - length // 2, 0, ctx_len - length))


def make_example(acts: Activations, windows: TokenWindows, chunk: int, start: int, length: int,
                 ctx_len: int, quantile: int = -1) -> Example:
    window = chunk // (ctx_len // length)
    sel = (acts.windows == window) & (acts.positions >= start) & (acts.positions < start + length)
    dense = np.zeros(length, np.float32)
    dense[acts.positions[sel] - start] = acts.values[sel]
    toks = windows.tokens[window, start : start + length].tolist()
    return Example(int(window), int(start), toks, [round(float(v), 4) for v in dense], int(chunk), quantile)


def _stratified(groups: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices: ~n / len(groups) from each group (more from the others where one runs out)."""
    pools = [rng.permutation(g) for g in groups]
    out: list[int] = []
    while len(out) < n and any(p.size for p in pools):
        for i, p in enumerate(pools):
            if p.size and len(out) < n:
                out.append(int(p[0]))
                pools[i] = p[1:]
    return np.array(out, np.int64)  # round-robin order: any prefix stays stratified


def split_train_test(n: int, config: ExampleConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the weakest-first chunk list: (train, test candidates in preference order).

    When there are fewer chunks than n_examples_train + n_examples_test, both shrink in proportion."""
    want = config.n_examples_train + config.n_examples_test
    n_train = config.n_examples_train if n >= want else max(1, round(n * config.n_examples_train / want))
    groups = np.array_split(np.arange(n), min(config.n_quantiles, n))
    if config.train_type == "top":
        train = np.arange(n)[::-1][:n_train]
    elif config.train_type == "random":
        train = rng.choice(n, size=n_train, replace=False)
    elif config.train_type == "quantiles":
        train = _stratified(groups, n_train, rng)
    else:  # mix: half the strongest, half stratified over the rest
        top = np.arange(n)[::-1][: n_train // 2]
        rest = [np.setdiff1d(g, top) for g in groups]
        train = np.r_[top, _stratified(rest, n_train - top.size, rng)]
    left = [np.setdiff1d(g, train) for g in groups]
    return np.sort(train), _stratified(left, sum(g.size for g in left), rng)


def quantile_of(n: int, n_quantiles: int) -> np.ndarray:
    """int [n]: quantile group of each weakest-first index."""
    out = np.zeros(n, np.int64)
    for q, g in enumerate(np.array_split(np.arange(n), min(n_quantiles, max(n, 1)))):
        out[g] = q
    return out


def _overlaps(spans: dict[int, list[int]], window: int, start: int, length: int) -> bool:
    return any(abs(start - s) < length for s in spans.get(window, ()))


def draw_activating(store: LatentStore, windows: TokenWindows, acts: Activations, chunks: Chunks,
                    config: ExampleConfig, rng: np.random.Generator) -> tuple[list[Example], list[Example]]:
    """(train, test): disjoint chunks, and test spans that share no token with a train span."""
    L, ctx = config.example_ctx_len, store.ctx_len
    train_idx, test_order = split_train_test(chunks.ids.size, config, rng)
    quant = quantile_of(chunks.ids.size, config.n_quantiles)

    def example(i: int) -> Example:
        start = span_start(int(chunks.ids[i]), int(chunks.peak[i]), ctx, L, config.center_examples)
        return make_example(acts, windows, int(chunks.ids[i]), start, L, ctx, int(quant[i]))

    train = [example(int(i)) for i in train_idx]
    spans: dict[int, list[int]] = {}
    for e in train:
        spans.setdefault(e.window, []).append(e.start)
    n_test = config.n_examples_test if chunks.ids.size >= config.n_examples_train + config.n_examples_test \
        else chunks.ids.size - train_idx.size
    test: list[Example] = []
    for i in test_order:
        if len(test) >= n_test:
            break
        e = example(int(i))
        if not _overlaps(spans, e.window, e.start, L):
            test.append(e)
    return train, test


def build_examples(store: LatentStore, windows: TokenWindows, latent: int, config: ExampleConfig,
                   source: Any) -> LatentExamples | str:
    """The examples of one latent, or the reason it is skipped (too few activating chunks).

    Args:
        source: a `negatives.NegativeSource` (random, neighbours, FAISS).
    """
    rng = np.random.default_rng([config.seed, latent])
    acts = latent_activations(store, windows, latent, config.filter_bos)
    chunks = activating_chunks(acts, store.ctx_len, config.example_ctx_len)
    if chunks.ids.size < max(config.min_examples, 2):
        return f"{chunks.ids.size} activating examples < min_examples ({max(config.min_examples, 2)})"
    train, test = draw_activating(store, windows, acts, chunks, config, rng)
    n_shown = min(10, config.n_examples_train)  # for the contrastive explainer
    neg_ids, used = source.pick(latent, chunks, train, config.n_non_activating + n_shown, rng)
    L, per = config.example_ctx_len, store.ctx_len // config.example_ctx_len
    negatives = [make_example(acts, windows, int(c), int(c % per) * L, L, store.ctx_len) for c in neg_ids]
    # the hardest negatives (a source's preference order) are scored; the next ones may be shown
    return LatentExamples(latent, int(chunks.ids.size), train, test, negatives[: config.n_non_activating], used,
                          negatives[config.n_non_activating :])
