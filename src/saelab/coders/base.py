"""`SparseCoder`: one module for every sparse dictionary (SAE, transcoder, crosscoder).

Layout (rows of W_dec are latent directions):
    W_enc [d_in, d_sae]      crosscoder [n_sources, d_in, d_sae]
    b_enc [d_sae]
    W_dec [d_sae, d_out]     crosscoder [d_sae, n_sources, d_out]
    b_dec [d_out]            crosscoder [n_sources, d_out]
    threshold                jumprelu [d_sae]; batchtopk / matryoshka scalar; else None
    W_skip [d_out, d_in]     transcoders / SAEs with a skip connection; else None

Every architecture's activation is non-negative: relu(pre) masked by its rule.
BatchTopK and Matryoshka encode at inference with their learned global threshold, as
dictionary_learning does (`use_threshold=True`); training code uses `batch_topk_activation`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .._io import atomic_path, read_json_object, write_cfg
from ..errors import ConfigError, FormatError
from .config import (
    ARCHITECTURES,
    KINDS,
    THRESHOLD_ARCHITECTURES,
    Architecture,
    CoderConfig,
    Kind,
    SourceFormat,
)

log = logging.getLogger(__name__)

NATIVE_FORMAT = "saelab.sparse_coder/1"
WEIGHTS_NAME = "weights.safetensors"

__all__ = ["ARCHITECTURES", "KINDS", "Architecture", "CoderConfig", "CoderOutput", "Kind", "NATIVE_FORMAT",
           "SourceFormat", "SparseCoder", "WEIGHTS_NAME", "batch_topk_activation", "topk_activation"]


class CoderOutput(NamedTuple):
    """What `SparseCoder.forward` returns."""

    latents: Tensor
    """[N, d_sae] dense, non-negative latent activations."""

    x_hat: Tensor
    """[N, d_out] reconstruction (crosscoder: [N, n_sources, d_out])."""


def topk_activation(pre: Tensor, k: int) -> Tensor:
    """Per-token top-k of relu(pre), dense. [N, d_sae] -> [N, d_sae]."""
    values, indices = torch.relu(pre).topk(k, dim=-1, sorted=False)  # [N, k]
    return torch.zeros_like(pre).scatter_(-1, indices, values)


def batch_topk_activation(pre: Tensor, k: int) -> Tensor:
    """BatchTopK (Bussmann et al. 2024): the k·N largest relu(pre) over the whole batch. [N, d_sae] -> [N, d_sae]."""
    acts = torch.relu(pre)
    flat = acts.flatten()  # [N * d_sae]
    values, indices = flat.topk(min(k * pre.shape[0], flat.numel()), sorted=False)
    return torch.zeros_like(flat).scatter_(0, indices, values).view_as(pre)


class SparseCoder(nn.Module):
    """A sparse dictionary: `encode(x) -> latents`, `decode(latents) -> x_hat`.

    Example:
        >>> coder = SparseCoder(CoderConfig("topk", d_in=64, d_sae=256, k=8))
        >>> out = coder(torch.randn(10, 64))   # out.latents [10, 256], out.x_hat [10, 64]
    """

    cfg: CoderConfig
    threshold: Tensor | None
    W_skip: nn.Parameter | None

    def __init__(self, cfg: CoderConfig, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        super().__init__()
        self.cfg = cfg
        kw = dict(dtype=dtype, device=device)
        d_in, d_sae, d_out, s = cfg.d_in, cfg.d_sae, cfg.out_width, cfg.n_sources
        crosscoder = cfg.kind == "crosscoder"
        # Unit-norm decoder rows; the encoder starts as the decoder's transpose where shapes allow.
        W_dec = torch.randn((d_sae, s, d_out) if crosscoder else (d_sae, d_out), **kw)
        W_dec /= W_dec.norm(dim=-1, keepdim=True)
        if d_out == d_in:
            W_enc = W_dec.permute(1, 2, 0) if crosscoder else W_dec.T  # [s, d_in, d_sae] | [d_in, d_sae]
        else:
            bound = d_in ** -0.5  # Kaiming-uniform scale of nn.Linear
            W_enc = torch.empty((s, d_in, d_sae) if crosscoder else (d_in, d_sae), **kw).uniform_(-bound, bound)
        self.W_enc = nn.Parameter(W_enc.contiguous())
        self.b_enc = nn.Parameter(torch.zeros(d_sae, **kw))
        self.W_dec = nn.Parameter(W_dec.contiguous())
        self.b_dec = nn.Parameter(torch.zeros((s, d_out) if crosscoder else (d_out,), **kw))
        self.W_skip = nn.Parameter(torch.zeros(d_out, d_in, **kw)) if cfg.skip else None
        if cfg.architecture == "jumprelu":
            self.register_buffer("threshold", torch.zeros(d_sae, **kw))
        elif cfg.architecture in THRESHOLD_ARCHITECTURES:
            self.register_buffer("threshold", torch.zeros((), **kw))  # learned in training
        else:
            self.register_buffer("threshold", None)

    # -- widths -------------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @property
    def d_out(self) -> int:
        return self.cfg.out_width

    @property
    def dtype(self) -> torch.dtype:
        return self.W_enc.dtype

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    # -- maths --------------------------------------------------------------------------------
    def pre_acts(self, x: Tensor) -> Tensor:
        """Encoder pre-activations. x [N, d_in] (crosscoder [N, n_sources, d_in]) -> [N, d_sae]."""
        x = x.to(self.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        if self.cfg.kind == "crosscoder":
            return torch.einsum("nsd,sdf->nf", x, self.W_enc) + self.b_enc
        return x @ self.W_enc + self.b_enc

    def activation(self, pre: Tensor) -> Tensor:
        """The inference activation function. pre [N, d_sae] -> latents [N, d_sae], non-negative."""
        arch = self.cfg.architecture
        if arch == "relu":
            return torch.relu(pre)
        if arch == "topk":
            return topk_activation(pre, self.cfg.k)
        # jumprelu (per-latent threshold) and batchtopk / matryoshka (global threshold)
        return torch.relu(pre) * (pre > self.threshold)

    def encode(self, x: Tensor) -> Tensor:
        """x [N, d_in] (crosscoder [N, n_sources, d_in]) -> latents [N, d_sae], dense and non-negative."""
        return self.activation(self.pre_acts(x))

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """latents z [N, d_sae] -> x_hat [N, d_out] (crosscoder [N, n_sources, d_out]).

        `x` [N, d_in] is the encoder's input, needed only when the coder has a skip connection.
        """
        z = z.to(self.dtype)
        if self.cfg.kind == "crosscoder":
            return torch.einsum("nf,fsd->nsd", z, self.W_dec) + self.b_dec
        out = z @ self.W_dec + self.b_dec
        if self.W_skip is not None:
            if x is None:
                raise ConfigError("decode: x is None; this coder has a skip connection (cfg.skip=True), "
                                  "pass the encoder input as decode(z, x=x).")
            out = out + x.to(self.dtype) @ self.W_skip.T
        return out

    def forward(self, x: Tensor) -> CoderOutput:
        """x [N, d_in] -> CoderOutput(latents [N, d_sae], x_hat [N, d_out])."""
        latents = self.encode(x)
        return CoderOutput(latents, self.decode(latents, x=x))

    @torch.no_grad()
    def set_decoder_unit_norm(self) -> None:
        """Scale every W_dec row (per source for crosscoders) to unit L2 norm, in place."""
        norms = self.W_dec.norm(dim=-1, keepdim=True)  # [d_sae, 1] | [d_sae, s, 1]
        self.W_dec.div_(norms.clamp_min(torch.finfo(self.dtype).eps))

    def extra_repr(self) -> str:
        c = self.cfg
        k = f", k={c.k}" if c.k is not None else ""
        return (f"{c.kind} {c.architecture}, d_in={c.d_in}, d_sae={c.d_sae}, d_out={self.d_out}{k}, "
                f"hookpoint={c.hookpoint!r}")

    # -- native format ------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write `cfg.json` + `weights.safetensors` into `directory` (atomically); return the directory."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {name: t.detach().contiguous().cpu() for name, t in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": NATIVE_FORMAT})
        write_cfg(directory, {"format": NATIVE_FORMAT, **self.cfg.to_dict()})
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None) -> "SparseCoder":
        """Read a dictionary written by `save`. dtype None keeps the stored dtype."""
        from .formats.native import load_native

        return load_native(Path(directory), device=device, dtype=dtype)

    @classmethod
    def from_tensors(cls, cfg: CoderConfig, tensors: dict[str, Tensor], where: str,
                     device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> "SparseCoder":
        """Build a coder from tensors named as in `state_dict()`; shapes are checked and named in errors.

        `where` names the file the tensors came from, for error messages.
        """
        dtype = dtype or tensors["W_enc"].dtype
        coder = cls(cfg, device="meta")
        expected = {name: tuple(t.shape) for name, t in coder.state_dict().items()}
        missing = sorted(set(expected) - set(tensors))
        if missing:
            raise FormatError(f"{where}: missing tensors {', '.join(missing)}; expected {', '.join(sorted(expected))}.")
        for name, shape in expected.items():
            if tuple(tensors[name].shape) != shape:
                raise FormatError(f"{where}: tensor {name} has shape {list(tensors[name].shape)}; "
                                  f"expected {list(shape)} "
                                  f"for {cfg.kind} {cfg.architecture} d_in={cfg.d_in} d_sae={cfg.d_sae}.")
        # the module's parameters become the given tensors (assign): a 131K × 2,304 dictionary is held once while
        # it loads, not twice (2.4 GB, not 4.8)
        coder.load_state_dict({n: tensors[n].to(device=device, dtype=dtype).contiguous() for n in expected},
                              strict=True, assign=True)
        return coder


def read_native_cfg(directory: Path) -> CoderConfig:
    """The CoderConfig stored in a native dictionary's cfg.json."""
    data = read_json_object(directory / "cfg.json", "a saelab dictionary's config")
    if data.get("format") != NATIVE_FORMAT:
        raise FormatError(f"{directory / 'cfg.json'}: format is {data.get('format')!r}; expected {NATIVE_FORMAT!r}.")
    return CoderConfig.from_dict(data, where=str(directory / "cfg.json"))
