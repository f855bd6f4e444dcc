"""Synthetic activations with known ground-truth features: x = sum_i a_i f_i + b (SynthSAEBench, arXiv 2602.14687).

The same distribution as SAELens's `sae_lens.synthetic.SyntheticModel` for the same config, and the same files:
`SynthConfig.from_dict` reads SAELens's config dict, `load_synth_model` reads a directory SAELens's
`SyntheticModel.save` wrote (a Hub model too, once downloaded: `huggingface_hub.snapshot_download(repo_id)`),
and SAELens's `SyntheticModel.load_from_disk` reads what `SynthModel.save` writes.

    cfg = SynthConfig(num_features=4096, hidden_dim=256, seed=0,
                      hierarchy=HierarchyConfig(total_root_nodes=32, branching_factor=4, max_depth=3))
    m = make_synth_model(cfg)
    hidden, acts = m.sample(4096, generator=torch.Generator().manual_seed(0))  # [4096, 256], [4096, 4096]

For a seeded config, everything `make_synth_model` builds is bit for bit SAELens's (probabilities, compensation,
magnitudes, hierarchy, correlation factor, bias) except the orthogonalised feature vectors, which agree to
rounding (max |diff| ~1e-6: the same Adam optimisation with an analytic gradient instead of autograd).
Sampling follows SAELens's steps in order (model.py); with a correlation matrix, a Generator seeded s even
draws the same numbers as SAELens after `torch.manual_seed(s)`. Where saelab differs:
- independent firing is `rand < p` (SAELens: `torch.bernoulli(p)`), and no magnitude noise is drawn when every
  std is 0: the same distribution from different random numbers;
- `seed=None`: saelab never touches torch's global RNG (SAELens draws feature vectors and folded-normal
  magnitudes from it); fresh entropy instead;
- a loaded model's correlation thresholds follow its stored firing probabilities (see `load`);
- `SynthModel.save` adds mean/std_firing_magnitudes to the safetensors file (SAELens ignores them and
  rebuilds them from the config; saelab reads them, so an unseeded model round-trips exactly);
- `dtype` other than float32 is refused (SAELens cannot sample it either). SAELens's sparse-tensor output and
  hand-written `ActivationGenerator` modifiers are not part of a saved model and have no counterpart here.
"""

from .build import make_synth_model
from .config import HierarchyConfig, LowRankCorrelationConfig, OrthogonalizationConfig, SynthConfig
from .hierarchy import Hierarchy, HierarchyNode, generate_hierarchy
from .load import load_synth_model
from .model import SynthModel
from .profiles import (
    ConstantFiringProbabilityConfig,
    ConstantMagnitudeConfig,
    ExponentialMagnitudeConfig,
    FoldedNormalMagnitudeConfig,
    LinearFiringProbabilityConfig,
    LinearMagnitudeConfig,
    RandomFiringProbabilityConfig,
    ZipfianFiringProbabilityConfig,
)

__all__ = [
    "ConstantFiringProbabilityConfig", "ConstantMagnitudeConfig", "ExponentialMagnitudeConfig",
    "FoldedNormalMagnitudeConfig", "Hierarchy", "HierarchyConfig", "HierarchyNode", "LinearFiringProbabilityConfig",
    "LinearMagnitudeConfig", "LowRankCorrelationConfig", "OrthogonalizationConfig", "RandomFiringProbabilityConfig",
    "SynthConfig", "SynthModel", "ZipfianFiringProbabilityConfig", "generate_hierarchy", "load_synth_model",
    "make_synth_model",
]
