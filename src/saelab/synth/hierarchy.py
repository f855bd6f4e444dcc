"""Feature trees: a child fires only when its parent fires; the children of a mutually exclusive parent never
fire together (when several would, one of them, drawn uniformly, keeps its activation).

Semantics and the `hierarchy.json` layout are SAELens's (`sae_lens.synthetic.hierarchy`, after Noa Nabeshima's
Matryoshka SAE toy model): `generate_hierarchy` makes the same forest for the same seed (same `random.Random`
calls), `Hierarchy.correction_factors` the same probability compensation, and `Hierarchy.apply` the same
top-down gating. A node without a feature (`feature_index: null`, possible in a hand-written hierarchy.json)
passes its own parent's gate down to its children.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..errors import ConfigError
from .config import HierarchyConfig


@dataclass(frozen=True)
class HierarchyNode:
    """One node of a feature tree."""

    feature_index: int | None
    """The feature this node stands for; None for a node that only groups its children."""

    children: tuple[HierarchyNode, ...] = ()
    """Nodes that may fire only when this one does."""

    mutually_exclusive_children: bool = False
    """At most one child fires per sample (needs >= 2 children)."""

    scale_children_by_parent: bool = False
    """Children's activations are multiplied by this node's activation / its mean magnitude."""

    feature_id: str | None = None
    """Optional label, kept for hierarchy.json round trips."""

    def to_dict(self) -> dict[str, Any]:
        return {"feature_index": self.feature_index, "mutually_exclusive_children": self.mutually_exclusive_children,
                "scale_children_by_parent": self.scale_children_by_parent, "feature_id": self.feature_id,
                "children": [c.to_dict() for c in self.children]}

    @classmethod
    def from_dict(cls, d: Any) -> HierarchyNode:
        if not isinstance(d, dict) or not isinstance(d.get("children", []), list):
            raise ConfigError(f"hierarchy node: got {str(d)[:80]!r}; expected an object with feature_index and a "
                              "children list.")
        index = d.get("feature_index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise ConfigError(f"hierarchy node feature_index: got {index!r}; expected an integer or null.")
        return cls(feature_index=index, children=tuple(cls.from_dict(c) for c in d.get("children", [])),
                   mutually_exclusive_children=bool(d.get("mutually_exclusive_children", False)),
                   scale_children_by_parent=bool(d.get("scale_children_by_parent", False)),
                   feature_id=d.get("feature_id"))


class _Level(NamedTuple):
    """What happens at one tree depth, in order: mutual exclusion among this depth's siblings, then gating."""

    siblings: Tensor  # [groups, max_size] feature indices of exclusive sibling groups, padded with -1
    group_parents: Tensor  # [groups] gating feature of each group (-1: none)
    features: Tensor  # [m] gated features at this depth
    parents: Tensor  # [m] their gating feature (nearest ancestor with a feature)
    rescale: Tensor | None  # [m] bool: scaled by parent activation / parent mean; None when no node scales


@dataclass(frozen=True, eq=True)
class Hierarchy:
    """A forest of feature trees; `apply` enforces it on a batch of activations."""

    roots: tuple[HierarchyNode, ...]
    """Tree roots (each feature appears at most once in the forest)."""

    def __post_init__(self) -> None:
        seen: set[int] = set()
        stack = list(self.roots)
        while stack:
            node = stack.pop()
            if node.mutually_exclusive_children and len(node.children) < 2:
                raise ConfigError(f"hierarchy node {node.feature_index}: mutually_exclusive_children is true with "
                                  f"{len(node.children)} children; expected at least 2.")
            if node.feature_index is not None:
                if node.feature_index < 0 or node.feature_index in seen:
                    raise ConfigError(f"hierarchy: feature_index {node.feature_index} is negative or appears twice; "
                                      "expected each feature in at most one node.")
                seen.add(node.feature_index)
            stack.extend(node.children)

    @property
    def feature_indices(self) -> set[int]:
        return set(self.parents)

    def to_dict(self) -> dict[str, Any]:
        return {"roots": [r.to_dict() for r in self.roots]}

    @classmethod
    def from_dict(cls, d: Any) -> Hierarchy:
        if not isinstance(d, dict) or not isinstance(d.get("roots"), list):
            raise ConfigError("hierarchy: expected an object {\"roots\": [node, ...]}.")
        return cls(tuple(HierarchyNode.from_dict(r) for r in d["roots"]))

    @cached_property
    def parents(self) -> dict[int, int]:
        """feature -> its gating feature (-1 for a root): the nearest ancestor that has a feature."""
        out: dict[int, int] = {}
        for node, parent, _, _ in self._walk():
            if node.feature_index is not None:
                out[node.feature_index] = parent
        return out

    def _walk(self) -> list[tuple[HierarchyNode, int, int, bool]]:
        """(node, gating feature, depth, whether the gate rescales) for every node, breadth first."""
        out = [(r, -1, 0, False) for r in self.roots]
        i = 0
        while i < len(out):
            node, parent, depth, _ = out[i]
            gate = node.feature_index if node.feature_index is not None else parent
            out += [(c, gate, depth + 1, node.scale_children_by_parent) for c in node.children]
            i += 1
        return out

    @cached_property
    def levels(self) -> tuple[_Level, ...]:
        walk = self._walk()
        depth_of = max((d for _, _, d, _ in walk), default=0)
        gated: list[list[tuple[int, int, bool]]] = [[] for _ in range(depth_of + 1)]
        groups: list[list[tuple[int, list[int]]]] = [[] for _ in range(depth_of + 1)]
        for node, parent, depth, rescale in walk:
            if node.feature_index is not None and parent >= 0:
                gated[depth].append((node.feature_index, parent, rescale))
            kids = [c.feature_index for c in node.children if c.feature_index is not None]
            if node.mutually_exclusive_children and len(kids) >= 2:
                gate = node.feature_index if node.feature_index is not None else -1
                groups[depth + 1].append((gate, kids))
        any_rescale = any(r for level in gated for _, _, r in level)
        return tuple(_make_level(g, gr, any_rescale) for g, gr in zip(gated, groups))

    def correction_factors(self, base: Tensor) -> Tensor:
        """float32 [num_features]: what SAELens's `compute_probability_correction_factors` returns: 1 / (parent's
        base probability) for a child, times 1 + (sum of its exclusive siblings' base probabilities) / (parent's
        base probability) in an exclusive group; 1 elsewhere."""
        p = base.tolist()
        gate = [1.0] * len(p)
        exclusive = [1.0] * len(p)
        stack = [(r, 1.0) for r in self.roots]
        while stack:
            node, parent_p = stack.pop()
            node_p = parent_p
            if node.feature_index is not None:
                if parent_p > 0:
                    gate[node.feature_index] = 1.0 / parent_p
                node_p = p[node.feature_index]
            stack += [(c, node_p) for c in node.children]
            kids = [c.feature_index for c in node.children if c.feature_index is not None]
            if node.mutually_exclusive_children and len(kids) >= 2 and node_p > 0:
                total = sum(p[k] for k in kids)
                for k in kids:
                    exclusive[k] = 1.0 + max(0.0, total - p[k]) / node_p
        # float32 products of float32 factors, as SAELens's in-place float32 updates round them
        return torch.tensor(gate, dtype=torch.float32) * torch.tensor(exclusive, dtype=torch.float32)

    def apply(self, acts: Tensor, mean_magnitudes: Tensor, generator: torch.Generator) -> Tensor:
        """Enforce the forest on `acts` [n, num_features] (>= 0) in place, depth by depth; returns `acts`.

        A feature counts as firing when its activation is > 0. Exclusive groups draw their winner with
        `generator`."""
        for level in self.levels:
            if level.features.device != acts.device:
                level = _Level(*(None if t is None else t.to(acts.device) for t in level))
            if level.siblings.numel():
                _exclude(acts, level, generator)
            if level.features.numel():
                parent_vals = acts[:, level.parents]  # [n, m]
                factor = (parent_vals > 0).to(acts.dtype)
                if level.rescale is not None:
                    factor = torch.where(level.rescale, parent_vals / mean_magnitudes[level.parents], factor)
                acts[:, level.features] *= factor
        return acts


def _make_level(gated: list[tuple[int, int, bool]], groups: list[tuple[int, list[int]]], rescale: bool) -> _Level:
    size = max((len(kids) for _, kids in groups), default=0)
    siblings = torch.full((len(groups), size), -1, dtype=torch.long)
    for i, (_, kids) in enumerate(groups):
        siblings[i, : len(kids)] = torch.tensor(kids)
    return _Level(siblings=siblings, group_parents=torch.tensor([g for g, _ in groups], dtype=torch.long),
                  features=torch.tensor([f for f, _, _ in gated], dtype=torch.long),
                  parents=torch.tensor([p for _, p, _ in gated], dtype=torch.long),
                  rescale=torch.tensor([r for _, _, r in gated], dtype=torch.bool) if rescale else None)


def _exclude(acts: Tensor, level: _Level, generator: torch.Generator) -> None:
    """Where an exclusive group's gate fires and several siblings fire, keep one, drawn uniformly."""
    valid = level.siblings >= 0  # [g, k]
    active = (acts[:, level.siblings.clamp(min=0)] > 0) & valid  # [n, g, k]
    gate = level.group_parents
    gate_on = (acts[:, gate.clamp(min=0)] > 0) | (gate < 0)  # [n, g]
    active &= gate_on.unsqueeze(2)
    rows, cols = torch.nonzero(active.sum(2) > 1, as_tuple=True)  # conflicts
    if rows.numel() == 0:
        return
    contenders = active[rows, cols]  # [c, k]
    scores = torch.rand(contenders.shape, generator=generator, device=acts.device).masked_fill(~contenders, -1.0)
    losers = contenders.clone()
    losers[torch.arange(len(rows), device=acts.device), scores.argmax(1)] = False
    which, slot = torch.nonzero(losers, as_tuple=True)
    acts[rows[which], level.siblings[cols[which], slot]] = 0


def generate_hierarchy(num_features: int, cfg: HierarchyConfig, seed: int | None) -> Hierarchy:
    """The forest SAELens's `generate_hierarchy(num_features, cfg, seed)` builds: roots are features
    0 .. total_root_nodes - 1, children numbered on breadth first until the features run out; then a
    `mutually_exclusive_portion` of the eligible parents, drawn with the same `random.Random(seed)`, get
    exclusive children."""
    rng = random.Random(seed)
    roots = list(range(min(cfg.total_root_nodes, num_features)))
    children: dict[int, list[int]] = {}
    parents_by_depth = [(r, 0) for r in roots]  # every node built to have children, in creation order
    frontier, next_index = list(parents_by_depth), len(roots)
    while frontier:
        below = []
        for node, depth in frontier:
            if depth >= cfg.max_depth:
                continue
            bf = cfg.branching_factor
            width = bf if isinstance(bf, int) else rng.randint(bf[0], bf[1])  # drawn even once features run out
            kids = list(range(next_index, min(next_index + width, num_features)))
            next_index += len(kids)
            children[node] = kids
            if depth + 1 < cfg.max_depth:
                below += [(k, depth + 1) for k in kids]
        parents_by_depth += below
        frontier = below
    hi = cfg.mutually_exclusive_max_depth
    eligible = [node for node, depth in parents_by_depth if depth >= cfg.mutually_exclusive_min_depth
                and (hi is None or depth <= hi) and len(children.get(node, ())) >= 2]
    count = int(len(eligible) * cfg.mutually_exclusive_portion)
    exclusive = {eligible[i] for i in rng.sample(range(len(eligible)), count)} if count > 0 else set()
    scaled = {node for node, _ in parents_by_depth} if cfg.scale_children_by_parent else set()

    def build(index: int) -> HierarchyNode:
        return HierarchyNode(index, tuple(build(k) for k in children.get(index, ())),
                             mutually_exclusive_children=index in exclusive, scale_children_by_parent=index in scaled)

    return Hierarchy(tuple(build(r) for r in roots))
