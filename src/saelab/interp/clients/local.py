"""`transformers` client: an instruction model run in-process, batched.

Yes/no questions are answered from log-probabilities: one forward pass per prompt (prompts
batched with left padding), P(yes) read at the first answer position from the summed
probabilities of the tokens that spell "yes" / "no" in any case and spacing. No text is
generated, nothing has to be parsed, and the probability gives an AUC.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from ...errors import ConfigError
from .base import Answer, Client, Messages

log = logging.getLogger(__name__)


def _single_ids(tokenizer: Any, words: tuple[str, ...]) -> set[int]:
    """Ids of the spellings that are one token (a multi-token spelling's first piece, like "Y" of
    "YES", starts many other words and would inflate P(yes))."""
    ids = set()
    for w in words:
        enc = tokenizer.encode(w, add_special_tokens=False)
        if len(enc) == 1:
            ids.add(int(enc[0]))
    return ids


def _shared_cut(texts: list[str], min_chars: int = 200) -> int:
    """Where the common prefix of the prompts ends (at a line break, so no token straddles it); 0 when
    there is too little in common, or only one prompt, to be worth a cached prefix."""
    if len(texts) < 2:
        return 0
    common = os.path.commonprefix(texts)
    cut = common.rfind("\n") + 1
    return cut if cut >= min_chars else 0


class TransformersClient(Client):
    """A `LoadedModel` (see `saelab.models.load_model`) used as an explainer / judge."""

    name = "transformers"
    has_logprobs = True

    def __init__(self, lm: Any, batch_size: int = 8, max_len: int = 4096) -> None:
        self.lm, self.batch_size, self.max_len = lm, batch_size, max_len
        tok = lm.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        forms = ("Yes", " Yes", "yes", " yes", "YES"), ("No", " No", "no", " no", "NO")
        yes, no = _single_ids(tok, forms[0]), _single_ids(tok, forms[1])
        if unk := getattr(tok, "unk_token_id", None):
            yes.discard(unk), no.discard(unk)
        self.yes_ids, self.no_ids = sorted(yes - no), sorted(no - yes)
        if not self.yes_ids or not self.no_ids:
            raise ConfigError(f"explainer_model: the tokenizer of {lm.spec!r} has no distinct tokens for "
                              "'Yes' and 'No'; use an instruction model.")

    def render(self, messages: Messages) -> str:
        tok = self.lm.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"

    def n_tokens(self, messages: Messages) -> int:
        return len(self.lm.tokenizer.encode(self.render(messages), add_special_tokens=False))

    def _encode(self, prompts: list[Messages]) -> tuple[dict[str, torch.Tensor], list[bool]]:
        texts = [self.render(m) for m in prompts]
        enc = self.lm.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        lengths = enc["attention_mask"].sum(1).tolist()
        return {k: v.to(self.lm.device) for k, v in enc.items()}, [n <= self.max_len for n in lengths]

    def _batches(self, prompts: list[Messages]):
        for i in range(0, len(prompts), self.batch_size):
            yield prompts[i : i + self.batch_size]

    @torch.inference_mode()
    def judge(self, prompts: list[Messages]) -> list[Answer]:
        texts = [self.render(m) for m in prompts]
        cut = _shared_cut(texts)
        out: list[Answer] = []
        for i in range(0, len(texts), self.batch_size):
            batch = texts[i : i + self.batch_size]
            probs = self._p_yes_shared(batch, cut) if cut else self._p_yes(batch)
            out += [Answer(prob_yes=p) if n <= self.max_len else
                    Answer(failed=True, reason=f"prompt longer than {self.max_len} tokens") for p, n in probs]
        return out

    def _share(self, logits: torch.Tensor) -> list[float]:
        probs = torch.softmax(logits.float(), dim=-1)  # (B, vocab) at the first answer position
        yes, no = probs[:, self.yes_ids].sum(-1), probs[:, self.no_ids].sum(-1)
        return (yes / (yes + no).clamp_min(1e-12)).tolist()

    def _p_yes(self, texts: list[str]) -> list[tuple[float, int]]:
        enc = self.lm.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        lengths = enc["attention_mask"].sum(1).tolist()
        logits = self.lm.model(**{k: v.to(self.lm.device) for k, v in enc.items()}).logits[:, -1]
        return list(zip(self._share(logits), lengths))

    def _p_yes_shared(self, texts: list[str], cut: int) -> list[tuple[float, int]]:
        """The shared prefix (system prompt + explanation) runs once; each suffix continues from its
        KV cache, right-padded so that the pads follow the real tokens and cannot be attended to."""
        tok, dev = self.lm.tokenizer, self.lm.device
        prefix = tok(texts[0][:cut], return_tensors="pt", add_special_tokens=False)["input_ids"].to(dev)
        cache = self.lm.model(prefix, use_cache=True).past_key_values
        suffixes = [tok.encode(t[cut:], add_special_tokens=False) for t in texts]
        width = max(map(len, suffixes))
        ids = torch.full((len(texts), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(texts), prefix.shape[1] + width, dtype=torch.long)
        mask[:, : prefix.shape[1]] = 1
        for r, s in enumerate(suffixes):
            ids[r, : len(s)], mask[r, prefix.shape[1] : prefix.shape[1] + len(s)] = torch.tensor(s), 1
        cache.batch_repeat_interleave(len(texts))
        logits = self.lm.model(ids.to(dev), attention_mask=mask.to(dev), past_key_values=cache).logits
        last = torch.tensor([len(s) - 1 for s in suffixes])
        return list(zip(self._share(logits[torch.arange(len(texts)), last]),
                        [prefix.shape[1] + len(s) for s in suffixes]))

    @torch.inference_mode()
    def generate(self, prompts: list[Messages], max_tokens: int) -> list[Answer]:
        tok, out = self.lm.tokenizer, []
        for batch in self._batches(prompts):
            enc, fits = self._encode(batch)
            ids = self.lm.model.generate(**enc, max_new_tokens=max_tokens, do_sample=False,
                                         pad_token_id=tok.pad_token_id)
            texts = tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [Answer(text=t) if ok else Answer(failed=True, reason=f"prompt longer than {self.max_len} tokens")
                    for t, ok in zip(texts, fits)]
        return out

    @torch.inference_mode()
    def nll(self, prefixes: list[str], texts: list[str]) -> list[float]:
        """Mean negative log-likelihood (nats / token) of each text given its prefix (plain text, no chat template)."""
        tok, out = self.lm.tokenizer, []
        for i in range(0, len(texts), self.batch_size):
            pre = [tok.encode(p, add_special_tokens=False) for p in prefixes[i : i + self.batch_size]]
            txt = [tok.encode(t, add_special_tokens=False) for t in texts[i : i + self.batch_size]]
            rows = [a + b for a, b in zip(pre, txt)]
            width = max(map(len, rows))
            ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, row in enumerate(rows):  # left padding: every row ends at the last column
                ids[r, width - len(row):], mask[r, width - len(row):] = torch.tensor(row), 1
            logp = torch.log_softmax(self.lm.model(input_ids=ids.to(self.lm.device),
                                                   attention_mask=mask.to(self.lm.device)).logits.float(), -1)
            for r, t in enumerate(txt):
                target = ids[r, width - len(t):].to(logp.device)  # (T,)
                pred = logp[r, width - len(t) - 1 : width - 1]  # (T, vocab): position j predicts j + 1
                out.append(float(-pred.gather(1, target[:, None]).mean()))
        return out

    def describe(self) -> dict[str, Any]:
        return {"provider": self.name, "model": self.lm.spec, "path": self.lm.path,
                "dtype": str(self.lm.dtype).removeprefix("torch."), "batch_size": self.batch_size,
                "max_len": self.max_len, "yes_ids": self.yes_ids, "no_ids": self.no_ids}
