"""Model diffing: what changed between a base and a fine-tuned model, at which layer, in words.

Stages: a model pair checked for token alignment (`pair`), paired activations of both
models on the same token windows (`saelab.activations.paired`), a layer sweep of where they
diverge (`sweep`), a crosscoder on the chosen layers (`saelab.train`), its latent table,
names (`saelab.interp`) and a report. `saelab.finetune` makes a real pair from the embedded model and corpus.
"""

from ..train import CrosscoderConfig, train_crosscoder
from .latent_stats import (
                           GroupFiring,
                           LatentScaling,
                           LatentTable,
                           decoder_cosine,
                           delta_norm,
                           firing_frequency_by_group,
                           latent_scaling,
                           tag_latents,
)
from .pipeline import DiffConfig, DiffResult, run_feature_interpretation_pipeline

__all__ = ["CrosscoderConfig", "DiffConfig", "DiffResult", "GroupFiring", "LatentScaling", "LatentTable",
           "decoder_cosine", "delta_norm", "firing_frequency_by_group", "latent_scaling",
           "run_feature_interpretation_pipeline", "tag_latents", "train_crosscoder"]
