"""Dictionaries with known structure: a wide dictionary built from a narrow one.

Narrow latents are orthonormal directions. The wide dictionary holds
- exact copies of the first `n_same` narrow latents ("identical"),
- for the next `n_split` narrow latents, two latents each: d ± 1.2·u (normalised), whose
  directions sum back to the parent while each alone has cosine 1/√(1+1.44) ≈ 0.64 < 0.7,
- `n_novel` random directions orthogonal to every narrow latent ("novel").
The remaining narrow latents have no counterpart ("unique").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saelab.coders import CoderConfig, SparseCoder


@dataclass
class Truth:
    narrow: np.ndarray
    """[n_narrow, d] unit decoder rows"""
    wide: np.ndarray
    """[n_wide, d], rows shuffled by `wide_perm`"""
    same: dict[int, int]
    """narrow latent → its identical wide latent"""
    families: dict[int, list[int]]
    """narrow parent → its wide children"""
    novel: list[int]
    unique: list[int]


def build(d: int = 32, n_same: int = 6, n_split: int = 3, n_unique: int = 3, n_novel: int = 5,
          seed: int = 0) -> Truth:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    basis = q.T.astype(np.float32)  # [d, d] orthonormal rows
    n_narrow = n_same + n_split + n_unique
    narrow = basis[:n_narrow]
    spare = basis[n_narrow:]  # orthogonal to every narrow latent
    assert spare.shape[0] >= n_split + n_novel
    rows, kind = [], []
    for i in range(n_same):
        rows.append(narrow[i])
        kind.append(("same", i))
    for j, parent in enumerate(range(n_same, n_same + n_split)):
        u = spare[j]
        offsets = [1.2 * u, -1.2 * u]
        for off in offsets:
            v = narrow[parent] + off
            rows.append(v / np.linalg.norm(v))
            kind.append(("child", parent))
    mix = rng.standard_normal((n_novel, spare.shape[0] - n_split)).astype(np.float32)
    for v in mix @ spare[n_split:]:
        rows.append(v / np.linalg.norm(v))
        kind.append(("novel", -1))
    perm = rng.permutation(len(rows))
    wide = np.stack(rows)[perm].astype(np.float32)
    inv = np.argsort(perm)  # original row → new position
    same = {k[1]: int(inv[r]) for r, k in enumerate(kind) if k[0] == "same"}
    fams: dict[int, list[int]] = {}
    for r, k in enumerate(kind):
        if k[0] == "child":
            fams.setdefault(k[1], []).append(int(inv[r]))
    novel = sorted(int(inv[r]) for r, k in enumerate(kind) if k[0] == "novel")
    return Truth(narrow, wide, same, {p: sorted(c) for p, c in fams.items()}, novel,
                 list(range(n_same + n_split, n_narrow)))


def coder(directions: np.ndarray, hookpoint: str = "model.layers.1", scale: float = 50.0,
          bias: float = -0.5) -> SparseCoder:
    """A ReLU SAE whose encoder columns and decoder rows are `directions` [n, d]: identical
    directions give identical activations (so correlation 1). `scale` brings the tiny model's
    residual (std ≈ 0.02 per direction) to O(1), so `bias` leaves the latents sparse."""
    n, d = directions.shape
    c = SparseCoder(CoderConfig("relu", d_in=d, d_sae=n, hookpoint=hookpoint, model="tiny-llama"))
    with torch.no_grad():
        w = torch.from_numpy(directions)
        c.W_dec.copy_(w)
        c.W_enc.copy_(scale * w.T)
        c.b_enc.fill_(bias)
        c.b_dec.zero_()
    return c
