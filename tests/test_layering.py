"""House rules of the package's imports: stages import downward only, never each other's `_private`
names, and no two stages import each other (STYLE.md, Layout).

Every import counts, at module level or inside a function: a function-level import is still a
dependency, only a later one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "saelab"

LAYERS: list[set[str]] = [
    {"errors", "_io", "progress", "render", "lock", "distributed"},  # core: no stage
    {"workspace", "coders", "models"},
    {"data", "synth"},
    {"activations"},
    {"latents", "train", "finetune"},
    {"evals", "cooc"},
    {"interp"},
    {"sfal", "match"},
    {"diff"},
    {"report"},
    {"demo", "cli", "__init__", "__main__"},  # the front doors
]
"""Low to high. A module may import its own stage, any stage of its layer or below; a stage of the
same layer only where the two do not import each other (the cycle test)."""

LEVEL = {stage: i for i, layer in enumerate(LAYERS) for stage in layer}


def _stage(module: str) -> str:
    """saelab.interp.run -> interp; saelab._io -> _io; saelab -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> tuple[str, str]:
    """(module, package it resolves relative imports against)."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    module = ".".join(rel.parts)
    if path.name == "__init__.py":
        module = module.removesuffix(".__init__")
        return module, module
    return module, module.rsplit(".", 1)[0]


def imports() -> list[tuple[str, str, list[str], int]]:
    """(importing module, imported module, imported names, line) of every saelab import."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, package = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] == "saelab":
                    found.append((module, target, [a.name for a in node.names], node.lineno))
            elif isinstance(node, ast.Import):
                found += [(module, a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "saelab"]
    return found


def test_every_stage_has_a_layer() -> None:
    stages = {_stage(m) for m, *_ in imports()} | {_stage(t) for _, t, *_ in imports()}
    assert stages <= set(LEVEL), f"stages without a layer in LAYERS: {sorted(stages - set(LEVEL))}"


def test_stages_import_downward() -> None:
    upward = [f"{m}:{line} imports {t}" for m, t, _, line in imports()
              if LEVEL.get(_stage(t), -1) > LEVEL.get(_stage(m), 99)]
    assert not upward, "a lower stage imports a higher one:\n" + "\n".join(upward)


def test_no_private_name_crosses_a_stage() -> None:
    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    bad = []
    for m, t, names, line in imports():
        if _stage(m) == _stage(t):
            continue
        inner = t.split(".")[2:]  # a private module inside another stage's folder
        bad += [f"{m}:{line} imports {t}.{n}" for n in names if private(n)]
        bad += [f"{m}:{line} imports {t}" for p in inner if private(p)]
    assert not bad, "private names taken from another stage:\n" + "\n".join(bad)


def test_no_import_cycle_between_stages() -> None:
    edges: dict[str, set[str]] = {}
    for m, t, _, _ in imports():
        if _stage(m) != _stage(t):
            edges.setdefault(_stage(m), set()).add(_stage(t))

    def reaches(a: str, b: str) -> bool:
        seen, todo = set(), [a]
        while todo:
            x = todo.pop()
            if x == b:
                return True
            if x not in seen:
                seen.add(x)
                todo += edges.get(x, ())
        return False

    cycles = sorted({tuple(sorted((a, b))) for a, out in edges.items() for b in out if reaches(b, a)})
    assert not cycles, f"stages that import each other (directly or through others): {cycles}"


@pytest.mark.parametrize("rule", [test_stages_import_downward, test_no_private_name_crosses_a_stage])
def test_rules_catch_a_violation(rule, monkeypatch) -> None:
    """The rules are not vacuous: a planted upward, private import fails them."""
    planted = imports() + [("saelab.models.load", "saelab.interp.run", ["_client_factory"], 1)]
    monkeypatch.setattr(sys.modules[__name__], "imports", lambda: planted)
    with pytest.raises(AssertionError):
        rule()
