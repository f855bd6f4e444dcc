"""What an evaluation evaluates: a dictionary, or a dictionary-free dense baseline.

A `Reconstructor` maps activations at `hookpoint` to a prediction of `out_hookpoint`
(the same hookpoint for an SAE), returning its latents when it has any. Dense baselines
let a transcoder be compared with a "direct linear mapping" and an SAE with PCA of the
same number of active dimensions; they have no latents, so sparsity metrics do not apply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from ..coders.base import SparseCoder
from ..distributed import active, max_over_ranks, sum_over_ranks

log = logging.getLogger(__name__)


class Reconstructor:
    """Interface: `__call__(x [N, d_in]) -> (latents [N, d_sae] | None, x_hat [N, d_out])`."""

    name: str
    hookpoint: str
    out_hookpoint: str
    d_in: int
    d_sae: int | None = None
    kind: str = "sae"

    def __call__(self, x: Tensor) -> tuple[Tensor | None, Tensor]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "hookpoint": self.hookpoint,
                "out_hookpoint": self.out_hookpoint, "d_in": self.d_in, "d_sae": self.d_sae}


class CoderReconstructor(Reconstructor):
    """A `SparseCoder` (SAE or transcoder)."""

    def __init__(self, coder: SparseCoder, name: str):
        if coder.cfg.kind == "crosscoder":
            raise ValueError("crosscoders are evaluated by `saelab diff`, not `saelab eval`")
        self.coder, self.name = coder, name
        self.hookpoint = coder.cfg.hookpoint
        self.out_hookpoint = coder.cfg.out_hookpoint or coder.cfg.hookpoint
        self.d_in, self.d_sae, self.kind = coder.cfg.d_in, coder.cfg.d_sae, coder.cfg.kind

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.to(self.coder.dtype)
        z = self.coder.encode(x)
        return z, self.coder.decode(z, x)

    def describe(self) -> dict[str, Any]:
        cfg = self.coder.cfg
        return {**super().describe(), "architecture": cfg.architecture, "k": cfg.k, "source_format": cfg.source_format}


BaselineKind = Literal["pca", "linear"]
DENSE_SPECS = "dense:pca (K = the compared dictionary's L0), dense:pca:K (1 ≤ K ≤ d_in) or dense:linear"


def parse_dense_spec(spec: str, d_in: int | None = None) -> tuple[BaselineKind, int | None]:
    """(method, K) of a dense baseline spec `dense:pca`, `dense:pca:K` or `dense:linear`; K is None for the
    default. K must be a whole number from 1 to `d_in` (the width PCA keeps directions of, when known): PCA with
    every direction reconstructs perfectly, and K = 0 would be read by a slice as every direction too."""
    from ..errors import ConfigError

    method, _, k = spec.removeprefix("dense:").partition(":")
    if not spec.startswith("dense:") or method not in ("pca", "linear") or (method == "linear" and k):
        raise ConfigError(f"dense baseline: got {spec!r}; expected {DENSE_SPECS}.")
    if method == "linear" or not k:
        return method, None  # type: ignore[return-value]
    top = f"{d_in} (the dictionary's d_in)" if d_in is not None else "d_in"
    if not k.isdigit() or int(k) < 1 or (d_in is not None and int(k) > d_in):
        raise ConfigError(f"dense baseline: got K = {k!r} in {spec!r}; K is the number of principal directions "
                          f"kept, a whole number from 1 to {top}: e.g. dense:pca:32, or dense:pca for the "
                          "dictionary's L0.")
    return "pca", int(k)


@dataclass
class DenseBaseline(Reconstructor):
    """A dense map fitted by least squares from streamed moments (float64).

    `pca`: x̂ = μ + (x − μ) V_k V_kᵀ with the top-k principal directions (k = the compared
    dictionary's L0, rounded). `linear`: ŷ = W x + b, least squares from the input
    hookpoint to the output hookpoint (a transcoder's "direct linear mapping"), with a
    tiny ridge for stability.
    """

    method: BaselineKind
    hookpoint: str
    out_hookpoint: str
    d_in: int
    k: int | None = None
    name: str = ""
    n_fit_tokens: int = 0
    _sxx: Tensor | None = field(default=None, repr=False)
    _sxy: Tensor | None = field(default=None, repr=False)
    _sx: Tensor | None = field(default=None, repr=False)
    _sy: Tensor | None = field(default=None, repr=False)
    _W: Tensor | None = field(default=None, repr=False)
    _b: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.kind = "dense"
        self.d_sae = None
        self.name = self.name or (f"pca-{self.k}" if self.method == "pca" else "linear")

    def _zeros(self, d_out: int, device: torch.device) -> None:
        f64 = {"dtype": torch.float64, "device": device}
        self._sxx, self._sxy = torch.zeros(self.d_in, self.d_in, **f64), torch.zeros(self.d_in, d_out, **f64)
        self._sx, self._sy = torch.zeros(self.d_in, **f64), torch.zeros(d_out, **f64)

    def accumulate(self, x: Tensor, y: Tensor) -> None:
        """x: [N, d_in], y: [N, d_out] (y is x for PCA); the sums stay on x's device."""
        x, y = x.double(), y.double()
        if self._sxx is None:
            self._zeros(y.shape[1], x.device)
        assert self._sxx is not None and self._sxy is not None and self._sx is not None and self._sy is not None
        self._sxx += x.T @ x
        self._sxy += x.T @ y
        self._sx += x.sum(0)
        self._sy += y.sum(0)
        self.n_fit_tokens += x.shape[0]

    def all_reduce(self) -> None:
        """Sum every rank's moments into each rank's (nothing to do without a process group), so every rank
        fits the same map."""
        if not active():
            return
        d_out = int(max_over_ranks(torch.tensor([0 if self._sy is None else self._sy.numel()]))[0])
        if self._sxx is None:  # a rank with no fit tokens
            self._zeros(d_out, torch.device("cpu"))
        assert self._sxx is not None and self._sxy is not None and self._sx is not None and self._sy is not None
        self._sxx, self._sxy = sum_over_ranks(self._sxx), sum_over_ranks(self._sxy)
        self._sx, self._sy = sum_over_ranks(self._sx), sum_over_ranks(self._sy)
        self.n_fit_tokens = int(sum_over_ranks(torch.tensor([self.n_fit_tokens]))[0])

    def fit(self) -> "DenseBaseline":
        n = self.n_fit_tokens
        assert (n > 0 and self._sxx is not None and self._sx is not None and self._sy is not None
                and self._sxy is not None)
        mx, my = self._sx / n, self._sy / n
        cov_xx = self._sxx / n - torch.outer(mx, mx)  # [d_in, d_in]
        if self.method == "pca":
            assert self.k is not None
            _, vecs = torch.linalg.eigh(cov_xx)
            v = vecs[:, -self.k:]  # [d_in, k], top-k directions
            self._W, self._b = v @ v.T, mx - mx @ (v @ v.T)
        else:
            cov_xy = self._sxy / n - torch.outer(mx, my)  # [d_in, d_out]
            ridge = 1e-6 * torch.trace(cov_xx) / cov_xx.shape[0]
            self._W = torch.linalg.solve(cov_xx + ridge * torch.eye(cov_xx.shape[0], dtype=torch.float64), cov_xy)
            self._b = my - mx @ self._W
        return self

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> tuple[None, Tensor]:
        assert self._W is not None and self._b is not None, "fit() first"
        return None, (x.double() @ self._W.to(x.device) + self._b.to(x.device)).to(torch.float32)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "method": self.method, "k": self.k, "n_fit_tokens": self.n_fit_tokens}
