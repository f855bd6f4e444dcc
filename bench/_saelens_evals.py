"""Run SAELens's `run_evals` on given token windows (executed with the SAELens venv's python).

Not saelab code: a peer harness for bench/evals.py. Reads the windows from a safetensors
file so SAELens sees exactly the tokens saelab evaluates, in the same batches.

    .venv-saelens/bin/python bench/_saelens_evals.py MODEL_DIR SAE_DIR TOKENS.safetensors BATCH OUT.json

`make venv-saelens` builds `.venv-saelens` (versions in bench/peers/saelens.txt).
"""

import json
import sys
import time

import torch
from safetensors.torch import load_file


class WindowsStore:
    """Stand-in for SAELens's ActivationsStore: serves our windows, in order, batch by batch."""

    normalize_activations = "none"

    def __init__(self, tokens: torch.Tensor, batch: int):
        self.tokens, self.store_batch_size_prompts, self.context_size, self.pos = tokens, batch, tokens.shape[1], 0

    def get_batch_tokens(self, n: int) -> torch.Tensor:
        out = self.tokens[self.pos : self.pos + n]
        self.pos += n
        return out

    def reset_input_dataset(self) -> None:
        self.pos = 0


def main() -> None:
    model_dir, sae_dir, tokens_path, batch, out = sys.argv[1:6]
    batch = int(batch)
    from sae_lens import SAE
    from sae_lens.evals import get_eval_everything_config, run_evals
    from sae_lens.load_model import load_model
    from sae_lens.training.activation_scaler import ActivationScaler

    tokens = load_file(tokens_path)["tokens"].long()
    t0 = time.perf_counter()
    model = load_model("AutoModelForCausalLM", model_dir, device="cpu", hook_names=["model.layers.6"])
    sae = SAE.load_from_disk(sae_dir, device="cpu")
    t_load = time.perf_counter() - t0
    n_batches = tokens.shape[0] // batch
    cfg = get_eval_everything_config(batch_size_prompts=batch, n_eval_reconstruction_batches=n_batches,
                                     n_eval_sparsity_variance_batches=n_batches)
    t1 = time.perf_counter()
    # no positions excluded on either side (saelab: exclude=()), so the definitions agree
    metrics, _ = run_evals(sae, WindowsStore(tokens, batch), model, ActivationScaler(), cfg,
                           exclude_special_tokens=False)
    t_eval = time.perf_counter() - t1
    flat = {k: v for group in metrics.values() for k, v in group.items()}
    with open(out, "w") as f:
        json.dump({"metrics": flat, "seconds_eval": t_eval, "seconds_load": t_load, "n_tokens": tokens.numel()}, f,
                  indent=2)


if __name__ == "__main__":
    main()
