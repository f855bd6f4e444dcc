"""Synthetic interp workspaces (planted latents on known words) and a scripted judge.

Latent i (i < N_PLANTED) fires exactly on the word PLANTED[i]; latent RARE fires 3 times;
the explanations an honest explainer should find are the planted words themselves.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from saelab.cooc.synthetic import write_workspace
from saelab.interp.clients.base import Answer, Client

from ..conftest import WORDS

PLANTED = ("king", "music", "war", "city", "water", "church")
RARE = len(PLANTED)
D_SAE = len(PLANTED) + 2  # the last latent never fires
N_WINDOWS, CTX = 48, 64
EXTRA = ("Yes", "No", "yes", "Explanation", "Text", "feature", "<<", ">>")


def interp_tokenizer():
    """A word-level tokenizer whose vocabulary has Yes / No (for log-prob judging)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for w in dict.fromkeys(list(WORDS) + list(EXTRA) + list(".,;:!?")):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")


def planted_workspace(root, seed: int = 0):
    """(workspace, tokenizer): random sentences; latent i fires where PLANTED[i] stands."""
    tok = interp_tokenizer()
    rng = np.random.default_rng(seed)
    filler = [tok.convert_tokens_to_ids(w) for w in WORDS if w not in PLANTED]
    tokens = rng.choice(filler, size=(N_WINDOWS, CTX))
    planted_ids = [tok.convert_tokens_to_ids(w) for w in PLANTED]
    mask = rng.random(tokens.shape) < 0.05
    tokens[mask] = rng.choice(planted_ids, size=int(mask.sum()))
    tokens[:, 0] = filler[0]
    rows = [(w, p, PLANTED.index(tok.convert_ids_to_tokens(int(tokens[w, p]))))
            for w, p in zip(*np.nonzero(np.isin(tokens, planted_ids)))]
    rows += [(1, 5, RARE), (7, 9, RARE), (20, 3, RARE)]
    doc = np.repeat(np.arange(N_WINDOWS), CTX).reshape(N_WINDOWS, CTX)
    ws = write_workspace(root, tokens, doc, np.array(rows, np.int64), D_SAE)
    return ws, tok


def planted_for_cli(root: Path):
    """`planted_workspace` in root/ws whose store names root/tok, where its tokenizer is saved, as the subject
    model's directory: what `saelab autointerp` loads to read the store's tokens."""
    ws, tok = planted_workspace(root / "ws")
    tok.save_pretrained(root / "tok")
    cfg_path = ws.latents("synth") / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model"]["path"] = str(root / "tok")
    cfg_path.write_text(json.dumps(cfg))
    return ws


@pytest.fixture
def planted(tmp_path):
    return planted_workspace(tmp_path / "ws")


class ScriptedClient(Client):
    """An honest rule-following 'LLM': explains with the most frequent marked word; answers Yes
    when the explanation's word is in the text (detection) or among the marked tokens (fuzz)."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, prompts, max_tokens):
        self.calls += len(prompts)
        return [Answer(text=self.answer(m[-1]["content"])) for m in prompts]

    @staticmethod
    def answer(text):
        """Explanations, and the generated answers of batched classification, simulation and intruder prompts."""
        if "Which text is the intruder?" in text:  # the one text whose marks lack the most common marked word
            texts = re.findall(r"^Text \d+: (.*)$", text, re.MULTILINE)
            marks = [set(re.findall(r"<<\s*(\w+)", t)) for t in texts]
            common = Counter(w for m in marks for w in m).most_common(1)[0][0]
            return str(next(i + 1 for i, m in enumerate(marks) if common not in m))
        word = m.group(1) if (m := re.match(r"Explanation: (\w+)", text)) else None
        if "Tokens (" in text:  # simulation: 10 on the explanation's word
            tokens = re.findall(r"^\d+\. '(.*)'$", text, re.MULTILINE)
            return str([10 if t.strip() == word else 0 for t in tokens])
        if "values, 1 (yes) or 0 (no)" in text:  # several texts, one list
            texts = re.findall(r"^Text \d+: (.*)$", text, re.MULTILINE)
            where = [" ".join(re.findall(r"<<([^>]*)>>", t)) if "<<" in t else t for t in texts]
            return str([int(word in w.split()) for w in where])
        marked = Counter(re.findall(r"<<\s*(\w+)", text))
        return f"Explanation: {marked.most_common(1)[0][0]}" if marked else "I do not know"

    def judge(self, prompts):
        self.calls += len(prompts)
        out = []
        for m in prompts:
            text = m[-1]["content"]
            if m_ := re.search(r"^Text: (.*)\n\nDoes this text contain (\w+)", text, re.DOTALL):  # detection
                body, word = m_.group(1), m_.group(2)
            else:
                word, body = re.search(r"Explanation: (\w+)", text).group(1), text.split("Text:", 1)[1]
            where = " ".join(re.findall(r"<<([^>]*)>>", body)) if "<<" in body else body
            out.append(Answer(prob_yes=0.9 if word in where.split() else 0.1))
        return out
