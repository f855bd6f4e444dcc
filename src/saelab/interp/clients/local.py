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


def row_ends(pieces: list[list[int]]) -> list[int]:
    """Index of the last token of each piece in the concatenated row (a piece of no tokens ends where
    the one before it does)."""
    ends, at = [], -1
    for piece in pieces:
        at += len(piece)
        ends.append(max(at, 0))
    return ends


def _contiguous_input(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The output layer's input, made contiguous. transformers reads the last position as a strided slice
    [B, 1, d] (`logits_to_keep=1`, and the first step of `generate`), and a bf16 linear on a strided 3-D input
    on the CPU expands the weight once per row: for Qwen2.5-1.5B's 151,936 × 1,536 head, B × 467 MB (+3.7 GB
    at batch 8, measured). Contiguous, it is one matmul over the same rows (the same logits up to rounding)."""
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


def contiguous_head(model: Any) -> None:
    """Make the output layer of `model` read a contiguous input (`_contiguous_input`), once per model."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and not getattr(head, "_saelab_contiguous", False):
        head.register_forward_pre_hook(_contiguous_input)
        head._saelab_contiguous = True


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
    can_prefill = True

    def __init__(self, lm: Any, batch_size: int = 8, max_len: int = 4096) -> None:
        self.lm, self.batch_size, self.max_len = lm, batch_size, max_len
        contiguous_head(lm.model)
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

    def _encode(self, prompts: list[Messages], prefix: str = "") -> tuple[dict[str, torch.Tensor], list[bool]]:
        texts = [self.render(m) + prefix for m in prompts]
        enc = self.lm.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        lengths = enc["attention_mask"].sum(1).tolist()
        return {k: v.to(self.lm.device) for k, v in enc.items()}, [n <= self.max_len for n in lengths]

    def _batches(self, prompts: list[Messages]):
        for i in range(0, len(prompts), self.batch_size):
            yield prompts[i : i + self.batch_size]

    @torch.inference_mode()
    def judge(self, prompts: list[Messages]) -> list[Answer]:
        return [Answer(prob_yes=p) if ok else self._too_long()
                for p, ok in self._over_last(prompts, lambda logits: self._share(logits))]

    @torch.inference_mode()
    def choose(self, prompts: list[Messages], n_options: int) -> list[Answer]:
        """Multiple choice among options labelled 1..n_options (n_options ≤ 9): the probabilities of the label
        tokens at the first answer position, renormalised, in `Answer.probs` (0-based)."""
        ids = self.label_ids(n_options)[1:]

        def share(logits: torch.Tensor) -> list[list[float]]:
            p = torch.softmax(logits.float(), dim=-1)[:, ids]  # (B, n_options)
            return (p / p.sum(-1, keepdim=True).clamp_min(1e-12)).tolist()

        return [Answer(probs=tuple(p)) if ok else self._too_long() for p, ok in self._over_last(prompts, share)]

    def label_ids(self, n: int) -> list[int]:
        """The token id of each label "0".."n" (each a single token), else a ConfigError."""
        ids = [self.lm.tokenizer.encode(str(k), add_special_tokens=False) for k in range(n + 1)]
        if any(len(i) != 1 for i in ids):
            raise ConfigError(f"explainer_model: the tokenizer of {self.lm.spec!r} does not spell the numbers 0..{n} "
                              "as single tokens; choose another model or a generating client.")
        return [i[0] for i in ids]

    def digit_values(self) -> list[int]:
        """The values 0..10 a simulation slot can be read over: 0..10 when "10" is one token, else 0..9
        (a tokenizer that splits numbers into digits, like Qwen2.5's and SmolLM2's, would read a 10 as a 1)."""
        self.label_ids(9)
        return list(range(11 if len(self.lm.tokenizer.encode("10", add_special_tokens=False)) == 1 else 10))

    def _too_long(self) -> Answer:
        return Answer(failed=True, reason=f"prompt longer than {self.max_len} tokens")

    def _over_last(self, prompts: list[Messages], reduce: Any) -> list[tuple[Any, bool]]:
        """reduce(logits (B, vocab) at the first answer position) per batch, and whether each prompt fits."""
        texts = [self.render(m) for m in prompts]
        cut = _shared_cut(texts)
        out = []
        for i in range(0, len(texts), self.batch_size):
            logits, lengths = self._last_logits(texts[i : i + self.batch_size], cut)
            out += [(v, n <= self.max_len) for v, n in zip(reduce(logits), lengths)]
        return out

    def _share(self, logits: torch.Tensor) -> list[float]:
        probs = torch.softmax(logits.float(), dim=-1)  # (B, vocab) at the first answer position
        yes, no = probs[:, self.yes_ids].sum(-1), probs[:, self.no_ids].sum(-1)
        return (yes / (yes + no).clamp_min(1e-12)).tolist()

    def _last_logits(self, texts: list[str], cut: int = 0) -> tuple[torch.Tensor, list[int]]:
        """Logits (B, vocab) after each whole text, and the texts' lengths in tokens."""
        if cut:
            return self._continue(texts[0][:cut], [t[cut:] for t in texts])
        enc = self.lm.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        lengths = enc["attention_mask"].sum(1).tolist()
        return (self.lm.model(**{k: v.to(self.lm.device) for k, v in enc.items()}, logits_to_keep=1).logits[:, -1],
                lengths)

    def _p_yes(self, texts: list[str]) -> list[tuple[float, int]]:
        logits, lengths = self._last_logits(texts)
        return list(zip(self._share(logits), lengths))

    def _p_yes_shared(self, texts: list[str], cut: int) -> list[tuple[float, int]]:
        logits, lengths = self._last_logits(texts, cut)
        return list(zip(self._share(logits), lengths))

    def _continue(self, prefix: str, suffixes: list[str]) -> tuple[torch.Tensor, list[int]]:
        """The shared prefix (system prompt + explanation) runs once; each suffix continues from its
        KV cache. Logits (B, vocab) after each suffix, and each prompt's length."""
        tok = self.lm.tokenizer
        pieces = [[tok.encode(s, add_special_tokens=False)] for s in suffixes]
        logits, lengths = self._forward_pieces(tok.encode(prefix, add_special_tokens=False), pieces)
        return torch.stack([row[-1] for row in logits]), lengths

    def _forward_pieces(self, prefix: list[int], rows: list[list[list[int]]]) -> tuple[list[torch.Tensor], list[int]]:
        """One forward of `prefix` and, continuing from its KV cache, of each row (the concatenation of its
        pieces), right-padded so that the pads follow the real tokens and cannot be attended to.
        Returns per row the logits (n_pieces, vocab) at the last token of each piece, and the row's full length."""
        dev = self.lm.device
        ids_prefix = torch.tensor([prefix], dtype=torch.long, device=dev)
        # logits_to_keep: the LM head (vocab × d, ~15% of a 1.5B model's FLOPs per token) runs only
        # where a value is read, not over the prefix or every suffix token.
        cache = self.lm.model(ids_prefix, use_cache=True, logits_to_keep=1).past_key_values
        flat = [[t for piece in row for t in piece] for row in rows]
        width, n_pre = max(map(len, flat)), len(prefix)
        ids = torch.full((len(rows), width), self.lm.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(rows), n_pre + width, dtype=torch.long)
        mask[:, :n_pre] = 1
        for r, f in enumerate(flat):
            ids[r, : len(f)], mask[r, n_pre : n_pre + len(f)] = torch.tensor(f, dtype=torch.long), 1
        cache.batch_repeat_interleave(len(rows))
        ends = [row_ends(row) for row in rows]
        keep = sorted({e for row in ends for e in row})
        column = {e: i for i, e in enumerate(keep)}
        logits = self.lm.model(ids.to(dev), attention_mask=mask.to(dev), past_key_values=cache,
                               logits_to_keep=torch.tensor(keep, device=dev)).logits  # (B, len(keep), vocab)
        return ([logits[r, torch.tensor([column[e] for e in row])] for r, row in enumerate(ends)],
                [n_pre + len(f) for f in flat])

    @torch.inference_mode()
    def expected_values(self, messages: Messages, rows: list[list[str]], values: list[int]) -> list[Answer]:
        """OpenAI's "all at once" simulation read from log-probs: `messages` (the same for every row) are
        rendered up to the assistant's turn; each row is a continuation of it cut into pieces, each piece
        ending where a value is due. At the end of every piece, the probabilities of the tokens that spell
        `values` (each a single token) are renormalised and their expectation is read. One forward per row,
        the prompt prefix run once. `Answer.values` holds one expectation per piece."""
        tok = self.lm.tokenizer
        prefix = tok.encode(self.render(messages), add_special_tokens=False)
        ids = [tok.encode(str(v), add_special_tokens=False)[0] for v in values]
        scale = torch.tensor(values, dtype=torch.float32)
        out: list[Answer] = []
        for i in range(0, len(rows), self.batch_size):
            batch = [[tok.encode(p, add_special_tokens=False) for p in row] for row in rows[i : i + self.batch_size]]
            logits, lengths = self._forward_pieces(prefix, batch)
            for lg, n in zip(logits, lengths):
                p = torch.softmax(lg.float(), dim=-1)[:, ids]  # (n_pieces, n_values)
                ev = (p / p.sum(-1, keepdim=True).clamp_min(1e-12)) @ scale.to(p.device)
                out.append(Answer(values=tuple(ev.tolist())) if n <= self.max_len else self._too_long())
        return out

    @torch.inference_mode()
    def generate(self, prompts: list[Messages], max_tokens: int, prefix: str = "") -> list[Answer]:
        """Greedy answers; `prefix` is written as the start of each answer (and returned with it), so that even
        a small model that ignores the requested format answers in it."""
        tok, out = self.lm.tokenizer, []
        for batch in self._batches(prompts):
            enc, fits = self._encode(batch, prefix)
            ids = self.lm.model.generate(**enc, max_new_tokens=max_tokens, do_sample=False,
                                         pad_token_id=tok.pad_token_id)
            texts = tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [Answer(text=prefix + t) if ok else self._too_long() for t, ok in zip(texts, fits)]
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
            logits = self.lm.model(input_ids=ids.to(self.lm.device), attention_mask=mask.to(self.lm.device)).logits
            for r, t in enumerate(txt):  # float32 log-probs one row at a time, over its text only (not B×T×vocab)
                target = ids[r, width - len(t):].to(logits.device)  # (T,)
                pred = torch.log_softmax(logits[r, width - len(t) - 1 : width - 1].float(), -1)  # (T, vocab):
                out.append(float(-pred.gather(1, target[:, None]).mean()))  # position j predicts j + 1
        return out

    def describe(self) -> dict[str, Any]:
        return {"provider": self.name, "model": self.lm.spec, "path": self.lm.path,
                "dtype": str(self.lm.dtype).removeprefix("torch."), "batch_size": self.batch_size,
                "max_len": self.max_len, "yes_ids": self.yes_ids, "no_ids": self.no_ids}
