"""`CoderConfig`: what a sparse dictionary is (architecture, kind, widths, where it reads).

A frozen dataclass with a docstring under every field; `__post_init__` validates and never
mutates. `to_dict` / `from_dict` are the JSON form stored in a dictionary's `cfg.json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from ..errors import ConfigError, choices_message

Architecture = Literal["relu", "jumprelu", "topk", "batchtopk", "matryoshka"]
Kind = Literal["sae", "transcoder", "crosscoder"]
SourceFormat = Literal["saelab", "saelens", "gemmascope", "sparsify", "dictionary_learning",
                       "dictionary_learning_crosscoder", "crosscoder_model_diff", "llamascope"]

ARCHITECTURES: tuple[str, ...] = get_args(Architecture)
KINDS: tuple[str, ...] = get_args(Kind)
SOURCE_FORMATS: tuple[str, ...] = get_args(SourceFormat)
K_ARCHITECTURES = ("topk", "batchtopk", "matryoshka")
THRESHOLD_ARCHITECTURES = ("jumprelu", "batchtopk", "matryoshka")


@dataclass(frozen=True)
class CoderConfig:
    """What a sparse dictionary is. Saved as `cfg.json` beside its weights."""

    architecture: Architecture
    """Activation function: relu (L1-trained), jumprelu, topk (per token), batchtopk
    (inference with a learned global threshold), matryoshka (batchtopk with nested groups)."""

    d_in: int
    """Width of the input activations (per source for crosscoders)."""

    d_sae: int
    """Number of latents."""

    k: int | None = None
    """Active latents per token for topk / batchtopk / matryoshka; None for relu / jumprelu."""

    kind: Kind = "sae"
    """sae (reconstructs its input), transcoder (predicts another hookpoint), crosscoder
    (several sources, one shared latent space, one decoder per source)."""

    d_out: int | None = None
    """Output width (transcoders); None means d_in."""

    n_sources: int = 1
    """Crosscoder: number of sources (models or layers); 1 for the other kinds."""

    hookpoint: str = ""
    """Input hookpoint, canonical module path such as "model.layers.6"."""

    out_hookpoint: str | None = None
    """Transcoder: the hookpoint it predicts."""

    sources: tuple[str, ...] = ()
    """Crosscoder: source names (model specs or hookpoints), empty or one per source."""

    model: str = ""
    """Model spec the dictionary was trained on."""

    skip: bool = False
    """Linear skip connection W_skip [d_out, d_in] added to the decoder output."""

    apply_b_dec_to_input: bool = True
    """Subtract b_dec from the input before encoding (SAELens / sparsify SAEs: yes;
    Gemma Scope and sparsify transcoders: no). Needs d_out == d_in."""

    group_sizes: tuple[int, ...] | None = None
    """Matryoshka: sizes of the nested latent groups, summing to d_sae."""

    source_format: SourceFormat = "saelab"
    """Format the weights were read from: saelab, saelens, gemmascope, sparsify, dictionary_learning."""

    extra: dict = field(default_factory=dict)
    """Format-specific facts worth keeping (for example the original config); JSON-serialisable."""

    def __post_init__(self) -> None:
        self._check_choices()
        self._check_widths()
        self._check_kind_fields()
        if self.apply_b_dec_to_input and self.out_width != self.d_in:
            raise ConfigError(f"CoderConfig.apply_b_dec_to_input: got True with d_in={self.d_in} "
                              f"!= d_out={self.d_out}; "
                              "b_dec can be subtracted from the input only when both widths agree.")
        if self.architecture == "matryoshka":
            if not self.group_sizes or any(int(g) <= 0 for g in self.group_sizes) or \
                    sum(self.group_sizes) != self.d_sae:
                raise ConfigError(f"CoderConfig.group_sizes: got {self.group_sizes!r}; a matryoshka dictionary needs "
                                  f"positive group sizes summing to d_sae={self.d_sae}.")
        elif self.group_sizes is not None:
            raise ConfigError(f"CoderConfig.group_sizes: got {self.group_sizes!r}; only matryoshka dictionaries "
                              f"have groups (architecture={self.architecture!r}).")
        if not isinstance(self.extra, dict):
            raise ConfigError(f"CoderConfig.extra: got {type(self.extra).__name__}; expected a dict.")

    def _check_choices(self) -> None:
        for name, valid in (("architecture", ARCHITECTURES), ("kind", KINDS), ("source_format", SOURCE_FORMATS)):
            if getattr(self, name) not in valid:
                raise ConfigError(choices_message(f"CoderConfig.{name}", getattr(self, name), valid))

    def _check_widths(self) -> None:
        for name in ("d_in", "d_sae", "n_sources"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"CoderConfig.{name}: got {value!r}; expected a positive integer.")
        if self.d_out is not None and (not isinstance(self.d_out, int) or self.d_out < 1):
            raise ConfigError(f"CoderConfig.d_out: got {self.d_out!r}; expected a positive integer or None (= d_in).")
        if self.architecture in K_ARCHITECTURES:
            if not isinstance(self.k, int) or not 1 <= self.k <= self.d_sae:
                raise ConfigError(f"CoderConfig.k: got {self.k!r}; architecture {self.architecture!r} needs "
                                  f"an integer k with 1 <= k <= d_sae={self.d_sae}.")
        elif self.k is not None:
            raise ConfigError(f"CoderConfig.k: got {self.k!r}; architecture {self.architecture!r} has no k "
                              f"(use None; k applies to {', '.join(K_ARCHITECTURES)}).")

    def _check_kind_fields(self) -> None:
        if self.kind == "sae" and self.out_width != self.d_in:
            raise ConfigError(f"CoderConfig.d_out: got {self.d_out} for kind 'sae' with d_in={self.d_in}; "
                              "an SAE reconstructs its input (use kind='transcoder').")
        if self.kind != "transcoder" and self.out_hookpoint is not None:
            raise ConfigError(f"CoderConfig.out_hookpoint: got {self.out_hookpoint!r} for kind {self.kind!r}; "
                              "only transcoders have an output hookpoint.")
        if self.kind != "crosscoder" and self.n_sources != 1:
            raise ConfigError(f"CoderConfig.n_sources: got {self.n_sources} for kind {self.kind!r}; "
                              "only crosscoders have several sources.")
        if self.sources and len(self.sources) != self.n_sources:
            raise ConfigError(f"CoderConfig.sources: got {len(self.sources)} names for n_sources={self.n_sources}; "
                              "give one name per source or none.")
        if self.kind == "crosscoder" and self.skip:
            raise ConfigError("CoderConfig.skip: got True for a crosscoder; skip connections exist for SAEs "
                              "and transcoders only.")

    @property
    def out_width(self) -> int:
        """d_out, or d_in when d_out is None."""
        return self.d_in if self.d_out is None else self.d_out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> "CoderConfig":
        """Build from `to_dict()` output; keys that are not fields are ignored, missing required keys raise."""
        names = {f.name for f in fields(cls)}
        missing = [n for n in ("architecture", "d_in", "d_sae") if n not in data]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}; a CoderConfig needs architecture, d_in, d_sae.")
        kwargs = {k: v for k, v in data.items() if k in names}
        if kwargs.get("sources") is not None:
            kwargs["sources"] = tuple(kwargs["sources"])
        if kwargs.get("group_sizes") is not None:
            kwargs["group_sizes"] = tuple(int(g) for g in kwargs["group_sizes"])
        return cls(**kwargs)
