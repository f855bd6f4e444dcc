"""Why detection can sit at chance on a latent: how often the latent's most frequent firing token (from the
top-tokens explanation) stands in its activating test texts, and in its non-activating ones. A judge that
follows "fires on 'the'" says yes wherever 'the' stands, so where that token is as common in the
non-activating texts, detection cannot separate them, however good the explanation.

Reads finished `saelab autointerp` runs (their detection records of the explainer's explanations, and the
top-tokens explanations) and prints, per latent, both shares and the detection AUC, then the mean AUC of
the latents whose top token is in at least half of the non-activating texts against the others.

    .venv/bin/python bench/interp_detection_overlap.py WS/interp/qwen-tally-40
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path

import numpy as np


def top_token(explanation: str) -> str | None:
    """The first token of a top-tokens explanation: "top tokens: ' the' 50%, …" → " the"."""
    m = re.match(r"top tokens: ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")", explanation)
    return ast.literal_eval(m.group(1)) if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="interp run directories")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from saelab.interp.metrics import auc

    rows = []
    for run in args.runs:
        store = json.loads((run / "run_config.json").read_text())["store"]
        tok = AutoTokenizer.from_pretrained(json.loads((Path(store) / "cfg.json").read_text())["model"]["path"])
        for path in sorted((run / "scores" / "detection" / "explanation").glob("*.json"), key=lambda p: int(p.stem)):
            records = json.loads(path.read_text())["records"]
            top = top_token(json.loads((run / "explanations" / "top-tokens" / path.name).read_text())["explanation"])
            ids = tok.encode(top, add_special_tokens=False) if top else []
            if len(ids) != 1:
                continue
            share = {label: np.mean([ids[0] in r["tokens"] for r in records if r["label"] == label])
                     for label in (0, 1)}
            rows.append((int(path.stem), top, share[1], share[0], auc(records)))
            print(f"{path.stem:>6} {top!r:>14}  activating {share[1]:.2f}  non-activating {share[0]:.2f}  "
                  f"detection AUC {rows[-1][4]:.2f}")
    a = np.array([r[2:] for r in rows], dtype=float)
    common = a[:, 1] >= 0.5
    print(f"{len(rows)} latents: top token in activating texts {a[:, 0].mean():.2f}, in non-activating "
          f"{a[:, 1].mean():.2f}; in >= half the non-activating texts for {int(common.sum())}: their detection "
          f"AUC {a[common, 2].mean():.3f}, the others' {a[~common, 2].mean():.3f}")


if __name__ == "__main__":
    main()
