"""Feature absorption on SAEBench's first-letter task (Chanin et al. 2024, "A is for Absorption").

1. Words: the model's single-token words (" cat"), split train/test disjointly by seed.
2. Activations at each word inside a few-shot prompt "{word} has the first letter:" at the
   dictionary's hookpoint (`absorption_data`: no gradients, forward stops at the hookpoint).
3. A 26-way linear probe on the activations; a letter qualifies when its test F1 > 0.6, and an
   overall score needs >= 20 qualifying letters (SAEBench's `min_GT_probe_f1`, `min_feats_for_eval`).
4. k-sparse probes on the latents find each letter's main latents (k grows while F1 rises > 0.03).
5. For every test word of a qualifying letter that the probe gets right (a probe true positive):
   - absorption fraction: the share of the probe projection carried by <= 3 other latents with
     cos >= 0.1 to the probe (instead of the main latents), counted when they carry >= 0.4 of it;
   - full absorption: main latents silent, the top-projecting latent has cos >= 0.025 with the
     probe and carries >= 0.4 of the activation's probe projection.
   Rates are over the probe true positives, as in SAEBench.

Absorption is measured on the same test activations the probe F1 was scored on (SAEBench
re-prompts the test words with new ICL examples from the whole vocabulary for this step).
A latent's projection is its contribution to the reconstruction along the unit probe direction,
z_i * (d_i . p). SAEBench uses z_i * cos(d_i, p); the two agree for unit-norm decoder rows.
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from ..activations.fits import hookpoint_widths
from ..errors import ConfigError
from ..progress import token_progress
from .absorption_data import LETTERS, PromptSpec, Word, alpha_words, read_word_activations, split_words
from .absorption_probes import (
    ProbeTraining,
    encode_sparse,
    f1,
    find_main_latents,
    probe_logits,
    train_probe,
)

log = logging.getLogger(__name__)

EPS = 1e-8
"""A latent with |activation| below this is silent (SAEBench's EPS)."""


@dataclass(frozen=True)
class AbsorptionConfig:
    """Settings of the first-letter absorption eval; the defaults are SAEBench's."""

    hookpoint: str = ""
    """Where to read the model; empty means the dictionary's own `cfg.hookpoint`."""
    seed: int = 42
    """Seeds the word split, the ICL examples and the probes' initialisation and shuffling."""
    max_words: int | None = None
    """Use at most this many words (a seeded random subset); None uses every single-token word."""
    test_fraction: float = 0.2
    """Share of the words held out as the test split (SAEBench: 80/20)."""
    prompt_template: str = "{word} has the first letter:"
    """One prompt line; the activation is read at the token of {word}."""
    answer_template: str = " {LETTER}"
    """Appended to each ICL example line; {LETTER} is the upper-case first letter."""
    example_separator: str = "\n"
    """Between ICL lines."""
    icl_examples: int = 10
    """Answered example lines before the target word (SAEBench's max_icl_examples)."""
    batch_size: int = 256
    """Target words per forward; they share one draw of ICL examples (SAEBench draws one per word)."""
    probe_epochs: int = 50
    """Epochs of the 26-way letter probe on the activations."""
    probe_lr: float = 1e-2
    """Initial Adam learning rate of both probes (decays exponentially to `probe_end_lr`)."""
    probe_end_lr: float = 1e-5
    """Final learning rate of both probes."""
    probe_weight_decay: float = 1e-4
    """Adam weight decay of the letter probe."""
    probe_batch_size: int = 4096
    """Minibatch of both probes."""
    k_sparse_l1: float = 0.01
    """L1 penalty of the latent probe whose top weights choose the k-sparse latents."""
    k_sparse_epochs: int = 50
    """Epochs of the L1 latent probe."""
    k_sparse_weight_decay: float = 1e-6
    """Adam weight decay of the L1 latent probe."""
    max_k: int = 10
    """Largest k tried by k-sparse probing."""
    f1_jump: float = 0.03
    """k grows while the k-sparse probe's test F1 rises by more than this."""
    min_probe_f1: float = 0.6
    """A letter qualifies when the letter probe's test F1 is above this."""
    min_letters: int = 20
    """Qualifying letters needed for an overall score comparable to SAEBench's."""
    full_absorption_cos: float = 0.025
    """Full absorption: minimum cosine of the top-projecting latent's decoder row with the probe."""
    fraction_cos: float = 0.1
    """Absorption fraction: minimum cosine of a compensating latent with the probe."""
    projection_proportion: float = 0.4
    """Both metrics: the absorbing latent(s) must carry at least this share of the probe projection."""
    max_absorbing_latents: int = 3
    """Absorption fraction: at most this many latents may compensate together."""
    min_main_latent_f1: float = 0.6
    """Diagnostic, not in SAEBench: a letter whose best k-sparse F1 is at most this has no latents
    that track it; the note says how many scored letters are in that case."""

    def __post_init__(self) -> None:
        if "{word}" not in self.prompt_template:
            raise ConfigError(f"AbsorptionConfig.prompt_template: got {self.prompt_template!r}; it must contain "
                              "'{word}'.")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"AbsorptionConfig.test_fraction: got {self.test_fraction}; expected 0 < x < 1.")
        for name in ("icl_examples", "batch_size", "probe_epochs", "probe_batch_size", "k_sparse_epochs", "max_k",
                     "min_letters", "max_absorbing_latents"):
            if getattr(self, name) < 1:
                raise ConfigError(f"AbsorptionConfig.{name}: got {getattr(self, name)}; expected a positive integer.")
        if self.max_words is not None and self.max_words < 2:
            raise ConfigError(f"AbsorptionConfig.max_words: got {self.max_words}; expected None or >= 2.")

    def letter_probe(self) -> ProbeTraining:
        return ProbeTraining(self.probe_epochs, self.probe_lr, self.probe_end_lr, self.probe_weight_decay,
                             self.probe_batch_size)

    def latent_probe(self) -> ProbeTraining:
        return ProbeTraining(self.k_sparse_epochs, self.probe_lr, self.probe_end_lr, self.k_sparse_weight_decay,
                             self.probe_batch_size, l1=self.k_sparse_l1)

    def prompts(self) -> PromptSpec:
        return PromptSpec(self.prompt_template, self.answer_template, self.example_separator, self.icl_examples,
                          self.batch_size)


def word_absorption(acts: Tensor, latents: Tensor, probe_direction: Tensor, W_dec: Tensor, main: Sequence[int],
                    config: AbsorptionConfig = AbsorptionConfig()) -> tuple[Tensor, Tensor]:
    """Absorption of n words of one letter.

    acts [n, d]: model activations; latents [n, d_sae]; probe_direction [d] (any norm);
    W_dec [d_sae, d]; main: the letter's main latent ids.
    Returns (absorption fraction [n] in [0, 1], full absorption [n] bool).

    Example: the main latent is silent and one latent with decoder cos 0.7 to the probe carries
    the whole probe projection -> fraction 1.0, full True.
    """
    p = probe_direction.float() / probe_direction.float().norm()
    W_dec = W_dec.float()
    dec_proj = W_dec @ p  # [d_sae]
    cos = dec_proj / W_dec.norm(dim=1).clamp_min(EPS)
    proj = latents.float() * dec_proj  # [n, d_sae] each latent's contribution along p
    act_proj = acts.float() @ p  # [n]
    is_main = torch.zeros(W_dec.shape[0], dtype=torch.bool)
    is_main[list(main)] = True
    main_proj = proj[:, is_main].sum(1)
    candidate = ~is_main & (cos >= config.fraction_cos)
    absorber = torch.where(candidate & (proj > 0), proj, torch.zeros(()))
    absorbed = absorber.topk(min(config.max_absorbing_latents, absorber.shape[1]), dim=1).values.sum(1)
    present = act_proj > 0  # no probe signal, nothing to absorb (SAEBench divides by it)
    share = absorbed / torch.where(present, act_proj, torch.ones(()))
    counted = torch.minimum(absorbed, act_proj - main_proj)
    fraction = torch.where(main_proj <= 0, torch.ones(()), counted / (counted + main_proj).clamp_min(EPS))
    no_absorption = ~present | (main_proj >= act_proj) | (share < config.projection_proportion)
    fraction = torch.where(no_absorption, torch.zeros(()), fraction.clamp(0, 1))

    main_silent = (latents[:, is_main].abs() < EPS).all(1)
    top_proj, top = proj.max(1)
    full = (main_silent & present & (cos[top] >= config.full_absorption_cos)
            & (top_proj / torch.where(present, act_proj, torch.ones(())) >= config.projection_proportion))
    return fraction, full


def _letter_row(letter: int, probe_f1: float, config: AbsorptionConfig) -> dict[str, Any]:
    return {"letter": LETTERS[letter], "probe_f1": round(probe_f1, 4), "qualifies": probe_f1 > config.min_probe_f1,
            "n_test_words": 0, "n_probe_true_positives": 0, "main_latents": None, "k_sparse_f1": None,
            "n_main_latents": None, "split": None, "absorption_fraction": None, "full_absorption_rate": None,
            "n_full_absorption": None, "absorbed_words": None}


def _score_letter(row: dict[str, Any], letter: int, data: dict[str, Any], coder, config: AbsorptionConfig,
                  test_words: Sequence[str] | None) -> int:
    """Fill `row` for one qualifying letter; return the number of unconverged sklearn fits."""
    ks = find_main_latents(data["l1_W"][letter], data["train_rows"], data["train_y"] == letter, data["test_rows"],
                           data["test_y"] == letter, config.max_k, config.f1_jump)
    row.update(main_latents=ks.latents, k_sparse_f1=[round(s, 4) for s in ks.f1_by_k],
               n_main_latents=len(ks.latents), split=len(ks.latents) > 1)
    tp = ((data["test_y"] == letter) & (data["test_logits"][:, letter] > 0)).nonzero().squeeze(1)
    row["n_probe_true_positives"] = len(tp)
    if len(tp) == 0:
        return ks.not_converged
    fraction, full = word_absorption(data["test_acts"][tp], data["test_rows"].dense(tp), data["W"][letter],
                                     coder.W_dec.detach().cpu(), ks.latents, config)
    row.update(absorption_fraction=round(float(fraction.mean()), 4),
               full_absorption_rate=round(float(full.float().mean()), 4),
               n_full_absorption=int(full.sum()))
    if test_words is not None:
        row["absorbed_words"] = [test_words[int(i)] for i in tp[fraction > 0][:20]]
    return ks.not_converged


def _summary(rows: list[dict[str, Any]], config: AbsorptionConfig) -> dict[str, Any]:
    scored = [r for r in rows if r["qualifies"] and r["absorption_fraction"] is not None]
    n_q = sum(r["qualifies"] for r in rows)

    def mean(key: str) -> float | None:
        return round(statistics.mean(r[key] for r in scored), 4) if scored else None

    def stdev(key: str) -> float | None:
        return round(statistics.stdev(r[key] for r in scored), 4) if len(scored) > 1 else None

    weak = sum(max(r["k_sparse_f1"] or [0.0]) <= config.min_main_latent_f1 for r in scored)
    out = {"n_qualifying_letters": n_q, "n_scored_letters": len(scored), "enough_letters": n_q >= config.min_letters,
           "mean_absorption_fraction": mean("absorption_fraction"),
           "mean_full_absorption_rate": mean("full_absorption_rate"),
           "mean_num_split_latents": mean("n_main_latents"), "n_split_letters": sum(bool(r["split"]) for r in scored),
           "std_absorption_fraction": stdev("absorption_fraction"),
           "std_full_absorption_rate": stdev("full_absorption_rate"),
           "n_letters_weak_main_latents": weak, "note": None}
    notes = []
    if n_q == 0:
        notes.append(f"no letter has letter-probe F1 > {config.min_probe_f1} at this hookpoint: the letter is not "
                     "linearly readable here, so there is no absorption score.")
    elif n_q < config.min_letters:
        notes.append(f"only {n_q} of 26 letters have letter-probe F1 > {config.min_probe_f1} at this hookpoint; "
                     f"SAEBench needs {config.min_letters} for an absorption score. The means are over these "
                     f"{len(scored)} letters only and are not comparable to SAEBench's score.")
    if weak:
        # SAEBench keeps k = 1 however poor its F1; "main latents silent" is then nearly always true
        # and absorption is measured against latents that do not track the letter.
        notes.append(f"{weak} of the {len(scored)} scored letters have main latents whose best k-sparse F1 is "
                     f"<= {config.min_main_latent_f1}: k-sparse probing found no latents that track those letters, "
                     "so their absorption figures measure noise rather than absorption.")
    out["note"] = " ".join(notes) or None
    return out


def score_absorption(train_acts: Tensor, train_letters: Tensor, test_acts: Tensor, test_letters: Tensor, coder,
                     config: AbsorptionConfig = AbsorptionConfig(),
                     test_words: Sequence[str] | None = None) -> dict[str, Any]:
    """Steps 3-6 on given activations: letter probe, k-sparse probes, absorption per letter.

    train_acts [N, d], test_acts [M, d] float; train_letters [N], test_letters [M] ints in [0, 26).
    Returns {"letters": [per-letter row], "n_qualifying_letters", "enough_letters", means, "note", ...}.
    """
    t0 = time.perf_counter()
    W, b = train_probe(train_acts, train_letters, 26, config.letter_probe(), config.seed)
    test_logits = probe_logits(test_acts, W, b)  # [M, 26]
    rows = [_letter_row(i, f1(test_logits[:, i] > 0, test_letters == i), config) for i in range(26)]
    for i, row in enumerate(rows):
        row["n_test_words"] = int((test_letters == i).sum())
    t1 = time.perf_counter()
    if not any(row["qualifies"] for row in rows):
        return {**_summary(rows, config), "letters": rows, "k_sparse_fits_not_converged": 0,
                "seconds_letter_probe": round(t1 - t0, 2), "seconds_latent_probes_and_absorption": 0.0}
    train_rows, test_rows = encode_sparse(coder, train_acts), encode_sparse(coder, test_acts)
    l1_W, _ = train_probe(train_rows, train_letters, 26, config.latent_probe(), config.seed + 1)
    data = {"W": W, "l1_W": l1_W, "train_rows": train_rows, "test_rows": test_rows, "train_y": train_letters,
            "test_y": test_letters, "test_logits": test_logits, "test_acts": test_acts}
    not_converged = sum(_score_letter(row, i, data, coder, config, test_words)
                        for i, row in enumerate(rows) if row["qualifies"])
    t2 = time.perf_counter()
    return {**_summary(rows, config), "letters": rows, "k_sparse_fits_not_converged": not_converged,
            "seconds_letter_probe": round(t1 - t0, 2), "seconds_latent_probes_and_absorption": round(t2 - t1, 2)}


def _check(lm, coder, config: AbsorptionConfig) -> str:
    """The hookpoint to read; ConfigError when the coder cannot be read there."""
    if coder.cfg.kind != "sae":
        raise ConfigError(f"absorption: the dictionary is a {coder.cfg.kind}; the first-letter absorption metric "
                          "compares decoder rows with a probe in the space the dictionary reads, so it needs kind "
                          "'sae'.")
    hookpoint = config.hookpoint or coder.cfg.hookpoint
    if not hookpoint:
        raise ConfigError("absorption: the dictionary has no cfg.hookpoint; set AbsorptionConfig.hookpoint.")
    (width,) = hookpoint_widths(lm.model, [hookpoint]).values()
    if width != coder.cfg.d_in:
        raise ConfigError(f"absorption: the dictionary's d_in is {coder.cfg.d_in} but hookpoint {hookpoint!r} of "
                          f"{getattr(lm, 'spec', 'the model')} has width {width}; use the dictionary's own model "
                          "and hookpoint.")
    return hookpoint


def run_absorption(lm, coder, config: AbsorptionConfig = AbsorptionConfig(), progress: bool = True) -> dict[str, Any]:
    """SAEBench's first-letter absorption of `coder` (an SAE) on the model `lm`.

    Returns a JSON-ready dict: per-letter rows ("letters"), means over the qualifying letters,
    "n_qualifying_letters", "enough_letters", "note" (set when fewer than `min_letters` qualify),
    word / prompt / token counts and seconds.

    Example:
        >>> res = run_absorption(load_model("smollm2-135m", dtype="bfloat16"), coder)
        >>> res["n_qualifying_letters"], res["mean_absorption_fraction"]
    """
    t0 = time.perf_counter()
    hookpoint = _check(lm, coder, config)
    words = alpha_words(lm.tokenizer)
    train, test = split_words(words, config.test_fraction, config.seed, config.max_words)
    rng = random.Random(config.seed)
    with token_progress(len(train) + len(test), "absorption: reading words", enabled=progress, unit="word") as adv:
        train_acts, train_counts = read_word_activations(lm, hookpoint, train, config.prompts(), rng, adv)
        test_acts, test_counts = read_word_activations(lm, hookpoint, test, config.prompts(), rng, adv)
    t1 = time.perf_counter()
    log.info("absorption: read %d words at %s in %.1f s", len(train) + len(test), hookpoint, t1 - t0)

    def letters(ws: list[Word]) -> Tensor:
        return torch.tensor([w.letter for w in ws])

    result = score_absorption(train_acts, letters(train), test_acts, letters(test), coder, config,
                              test_words=[w.text for w in test])
    counts = {k: train_counts[k] + test_counts[k] for k in train_counts}
    return {"task": "first-letter absorption (SAEBench; Chanin et al. 2024)", "hookpoint": hookpoint,
            "d_sae": coder.cfg.d_sae, **result, "n_vocab_words": len(words), "n_words": len(train) + len(test),
            "n_train_words": len(train),
            "n_test_words": len(test), **counts, "seconds_reading": round(t1 - t0, 2),
            "seconds": round(time.perf_counter() - t0, 2), "config": asdict(config)}
