"""Configs of the `train` stage: which dictionaries to train, and how.

Several dictionaries (different widths, architectures, or hookpoints) train from ONE
activation stream: each `DictionarySpec` says what to train, the `TrainConfig` says how
the shared stream is read and how every dictionary is optimised.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ..errors import ConfigError, choices_message

Architecture = Literal["topk", "batchtopk", "matryoshka"]
ARCHITECTURES: tuple[str, ...] = ("topk", "batchtopk", "matryoshka")
BDecInit = Literal["geometric_median", "mean", "zeros"]
ENCODER_DTYPES = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class DictionarySpec:
    """One dictionary to train: an SAE (reconstructs `hookpoint`) or a transcoder."""

    name: str
    """Directory name under `workspace/dictionaries/`."""
    hookpoint: str
    """Hookpoint the encoder reads (alias or canonical name, e.g. `resid_post.6`)."""
    d_sae: int
    """Number of latents."""
    k: int = 32
    """Active latents per token (TopK), or on average per token (BatchTopK, Matryoshka)."""
    architecture: Architecture = "topk"
    """`topk` (per-token top-k), `batchtopk` (top k·N over a batch of N tokens; inference
    uses a learned global threshold), `matryoshka` (BatchTopK with nested prefix losses)."""
    out_hookpoint: str | None = None
    """Transcoder target: the hookpoint the decoder predicts (None: an SAE)."""
    skip: bool = False
    """Transcoders only: add a learned linear skip connection W_skip x."""
    group_sizes: tuple[int, ...] | None = None
    """Matryoshka only: sizes of the nested latent groups (sum = d_sae). None: d_sae/32,
    d_sae/16, d_sae/8, d_sae/4 and the rest, as dictionary_learning's example."""
    lr: float | None = None
    """This dictionary's Adam rate, overriding TrainConfig.lr (e.g. a sweep from one stream)."""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"name: got {self.name!r}; expected a non-empty directory name without '/'.")
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(choices_message("architecture", self.architecture, ARCHITECTURES))
        if self.d_sae <= 0:
            raise ConfigError(f"d_sae: got {self.d_sae}; expected a positive number of latents, e.g. 4096.")
        if not 0 < self.k <= self.d_sae:
            raise ConfigError(f"k: got {self.k}; expected 1 ≤ k ≤ d_sae ({self.d_sae}), e.g. 32.")
        if self.skip and self.out_hookpoint is None:
            raise ConfigError("skip: a skip connection needs a transcoder; give out_hookpoint (--transcode-to).")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr: got {self.lr}; expected a positive learning rate, or None for the run's rate.")
        if self.group_sizes is not None:
            if self.architecture != "matryoshka":
                raise ConfigError(f"group_sizes: only Matryoshka dictionaries have groups, not {self.architecture!r}.")
            if sum(self.group_sizes) != self.d_sae or min(self.group_sizes) <= 0:
                raise ConfigError(f"group_sizes: got {self.group_sizes}; expected positive sizes summing to d_sae "
                                  f"({self.d_sae}).")

    @property
    def is_transcoder(self) -> bool:
        return self.out_hookpoint is not None

    def groups(self) -> tuple[int, ...]:
        """Matryoshka group sizes (one group of d_sae for the other architectures)."""
        if self.architecture != "matryoshka":
            return (self.d_sae,)
        if self.group_sizes is not None:
            return self.group_sizes
        sizes = [max(1, self.d_sae // f) for f in (32, 16, 8, 4)]
        return (*sizes, self.d_sae - sum(sizes))


def default_lr(d_sae: int) -> float:
    """sparsify's learning-rate scale: 2e-4 / sqrt(d_sae / 2^14)."""
    return 2e-4 / math.sqrt(d_sae / 2**14)


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """How any dictionary is optimised: Adam, its rate schedule, AuxK, dead latents, the BatchTopK
    threshold, checkpoints. `TrainConfig` (SAEs, transcoders) and `CrosscoderConfig` add what they read."""

    lr: float | None = None
    """Adam learning rate; None: sparsify's 2e-4 / sqrt(d_sae / 2^14) per dictionary."""
    lr_warmup_steps: int | None = None
    """Linear warm-up steps; None: 5% of the steps (at most 1000)."""
    lr_decay_fraction: float = 0.2
    """Fraction of the steps at the end over which the rate decays linearly to 0."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's (beta1, beta2)."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss that revives dead latents (Gao et al. 2024, appendix A.2); 0 turns it off."""
    dead_tokens: int = 10_000_000
    """A latent is dead after this many training tokens without firing (sparsify's default)."""
    threshold_beta: float = 0.99
    """BatchTopK/Matryoshka/crosscoder: EMA factor of the running minimum selected activation, which
    becomes the inference threshold (dictionary_learning uses 0.999 over long runs)."""
    seed: int = 0
    """Seed of the initialisation (and of the shuffle, where the run shuffles)."""
    checkpoint_every: int = 500
    """Steps between checkpoints (0: only the final one). Not part of a run's identity."""
    encoder_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """dtype of the one dense product of a step, the encoder's pre-activations that pick the active
    latents (`auto`: bfloat16 where the machine multiplies it fast, as `--dtype auto` decides for models;
    float32 elsewhere). The selected activations, the loss and every gradient are float32 either way."""

    field_prefix: ClassVar[str] = ""
    """How an error names a field (the CLI's option for TrainConfig; the class for the Python-only ones)."""

    def __post_init__(self) -> None:
        where = self.field_prefix
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"{where}lr: got {self.lr!r}; expected a positive rate (learning rate), e.g. 4e-4, "
                              "or None for the default.")
        if not isinstance(self.dead_tokens, int) or isinstance(self.dead_tokens, bool) or self.dead_tokens < 1:
            raise ConfigError(f"{where}dead_tokens: got {self.dead_tokens!r}; expected a positive integer.")
        if not 0 <= self.lr_decay_fraction <= 1:
            raise ConfigError(f"{where}lr_decay_fraction: got {self.lr_decay_fraction}; expected a fraction in [0, 1].")
        if not 0 <= self.threshold_beta < 1:
            raise ConfigError(f"{where}threshold_beta: got {self.threshold_beta}; expected 0 ≤ beta < 1.")
        if not (isinstance(self.auxk_alpha, (int, float)) and self.auxk_alpha >= 0):
            raise ConfigError(f"{where}auxk_alpha: got {self.auxk_alpha!r}; expected ≥ 0 (0 turns AuxK off).")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise ConfigError(f"{where}checkpoint_every: got {self.checkpoint_every!r}; expected an integer ≥ 0.")
        if self.encoder_dtype not in ENCODER_DTYPES:
            raise ConfigError(choices_message(f"{where}encoder_dtype", self.encoder_dtype, ENCODER_DTYPES))
        if self.lr_warmup_steps is not None and self.lr_warmup_steps < 0:
            raise ConfigError(f"{where}lr_warmup_steps: got {self.lr_warmup_steps}; expected ≥ 0, or None for 5%.")

    def warmup_steps(self, total_steps: int) -> int:
        if self.lr_warmup_steps is not None:
            return self.lr_warmup_steps
        return min(1000, max(1, total_steps // 20))


@dataclass(frozen=True)
class TrainConfig(OptimConfig):
    """How the dictionaries of one run are trained from one activation stream."""

    dictionaries: tuple[DictionarySpec, ...]
    """What to train; all read the same activation stream (one model pass)."""
    n_tokens: int = 10_000_000
    """Training budget in window tokens (excluded positions included, as sparsify counts)."""
    batch_size: int = 8
    """Windows per optimiser step (the text positions of `batch_size` windows)."""
    shuffle_windows: int = 64
    """Windows whose text positions are shuffled together before being cut into steps
    (a multiple of batch_size): neighbouring tokens of one document do not share a step."""
    first_window: int = 0
    """First window of the workspace's windows used for training (the ones before it,
    or after the budget, can be held out)."""
    lr_scale: float = 1.0
    """Multiplies every dictionary's default rate (not an explicit `lr`): a short run wants a larger one
    (the demo's sweep, bench/RESULTS.md: over 1,272 steps a 16K-latent decoder hardly leaves its
    initialisation at sparsify's rate; ×8 moves it)."""
    epochs: float = 1.0
    """Passes over the training windows. 1: their activations stream from the model into the steps (no
    copy kept); more (or `steps`): they are computed once into an activation buffer
    (`workspace/buffers/`, reused by later runs) and read epoch after epoch, shuffled across all of them."""
    steps: int | None = None
    """Optimiser steps (overrides `epochs`; buffered): for a fixed number of updates whatever the tokens."""
    heldout_windows: int = 8
    """Windows no step trains on, for the held-out FVU logged while training: the ones right after the
    training windows where the workspace has them, else the last of the training range (0: none)."""
    eval_every: int | None = None
    """Steps between held-out evaluations (None: 20 over the run)."""
    b_dec_init: BDecInit = "geometric_median"
    """Initial decoder bias: geometric median or mean of the first batch's targets, or zeros."""
    log_every: int = 10
    """Steps between JSONL log lines."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.dictionaries:
            raise ConfigError("dictionaries: got none; give at least one DictionarySpec.")
        names = [d.name for d in self.dictionaries]
        if len(set(names)) != len(names):
            raise ConfigError(f"dictionaries: names must be distinct, got {names}.")
        for fld in ("n_tokens", "batch_size", "shuffle_windows", "log_every"):
            if getattr(self, fld) <= 0:
                raise ConfigError(f"{fld}: got {getattr(self, fld)}; expected a positive integer.")
        if not (isinstance(self.epochs, (int, float)) and not isinstance(self.epochs, bool) and self.epochs > 0):
            raise ConfigError(f"epochs: got {self.epochs!r}; expected a positive number of passes, e.g. 1 or 8.")
        for fld in ("steps", "eval_every"):
            value = getattr(self, fld)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{fld}: got {value!r}; expected a positive integer, or None.")
        if not (isinstance(self.lr_scale, (int, float)) and self.lr_scale > 0):
            raise ConfigError(f"lr_scale: got {self.lr_scale!r}; expected a positive factor, e.g. 1 or 4.")
        if not isinstance(self.heldout_windows, int) or self.heldout_windows < 0:
            raise ConfigError(f"heldout_windows: got {self.heldout_windows!r}; expected an integer ≥ 0.")
        if self.shuffle_windows % self.batch_size:
            raise ConfigError(f"shuffle_windows: got {self.shuffle_windows}; expected a multiple of batch_size "
                              f"({self.batch_size}).")
        if self.b_dec_init not in ("geometric_median", "mean", "zeros"):
            raise ConfigError(choices_message("b_dec_init", self.b_dec_init, ["geometric_median", "mean", "zeros"]))
        if self.first_window < 0:
            raise ConfigError(f"first_window: got {self.first_window}; expected a non-negative integer.")

    @property
    def buffered(self) -> bool:
        """Whether the run reads an activation buffer (more than one pass) instead of the model's stream."""
        return self.steps is not None or self.epochs != 1

    def lr_for(self, spec: DictionarySpec) -> float:
        if spec.lr is not None:
            return spec.lr
        return self.lr if self.lr is not None else self.lr_scale * default_lr(spec.d_sae)

    @property
    def hookpoints(self) -> list[str]:
        """Every hookpoint the stream must read (inputs and transcoder targets), in order."""
        out: list[str] = []
        for d in self.dictionaries:
            for hp in (d.hookpoint, d.out_hookpoint):
                if hp is not None and hp not in out:
                    out.append(hp)
        return out



CROSSCODER_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class CrosscoderConfig(OptimConfig):
    """How a model-diffing crosscoder is trained on paired (base, target) activations at the same
    tokens. Saved in the coder's cfg.json (`extra.crosscoder`)."""

    d_sae: int
    """Number of latents."""
    k: int
    """BatchTopK: k·N latent activations are kept per batch of N tokens (k per token on average)."""
    n_tokens: int
    """Training budget in tokens; the stream is read again from its start if it runs out."""
    batch_size: int = 4096
    """Tokens per optimiser step."""
    n_shared: int = 0
    """Latents 0..n_shared-1 have one decoder tied across both models (Mishra-Sharma et al. 2025
    designate shared latents; Minder et al. 2025 use them too), so concepts common to both
    models can settle there instead of splitting into exclusive pairs."""
    decoder_init: Literal["tied", "independent"] = "tied"
    """tied: both models' decoder (and encoder) halves start equal, then train freely, so a latent's
    two halves differ only where the models' activations make them; independent: separate random
    halves. On the demo pair (SmolLM2 vs its BBC-sport fine-tune, 262K tokens) independent halves
    stayed unrelated (median decoder cosine 0.27, every Δnorm within 0.45–0.55: the differences
    were under-training, not the fine-tune); tied halves reached median cosine 0.999 and the most
    target-leaning latents fired most on sport text."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """dtype of the saved coder (training runs in float32: Adam moments need it)."""

    field_prefix: ClassVar[str] = "CrosscoderConfig."

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("d_sae", "k", "n_tokens", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"CrosscoderConfig.{name}: got {value!r}; expected a positive integer.")
        if self.k > self.d_sae:
            raise ConfigError(f"CrosscoderConfig.k: got {self.k}; expected 1 ≤ k ≤ d_sae ({self.d_sae}), e.g. 64.")
        if self.n_tokens < self.batch_size:
            raise ConfigError(f"CrosscoderConfig.n_tokens: got {self.n_tokens}; expected at least one batch "
                              f"(batch_size={self.batch_size}).")
        if not isinstance(self.n_shared, int) or not 0 <= self.n_shared < self.d_sae:
            raise ConfigError(f"CrosscoderConfig.n_shared: got {self.n_shared!r}; expected 0 ≤ n_shared < d_sae "
                              f"({self.d_sae}).")
        if self.decoder_init not in ("tied", "independent"):
            raise ConfigError(choices_message("CrosscoderConfig.decoder_init", self.decoder_init,
                                              ("tied", "independent")))
        if self.dtype not in CROSSCODER_DTYPES:
            raise ConfigError(choices_message("CrosscoderConfig.dtype", self.dtype, CROSSCODER_DTYPES))

    @property
    def total_steps(self) -> int:
        return self.n_tokens // self.batch_size

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else default_lr(self.d_sae)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


__all__ = ["ARCHITECTURES", "Architecture", "CrosscoderConfig", "DictionarySpec", "OptimConfig", "TrainConfig",
           "default_lr"]
