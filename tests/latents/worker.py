"""Run a latent cache on the tiny fixtures (a subprocess of the tests; torchrun-able).

Usage: python worker.py WORKSPACE [SECONDS_PER_BATCH]
The optional delay makes each batch slow, so a test can kill the run between shards.
Each process lists the shards it writes in WORKSPACE/written.rank-R.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from saelab.latents import CacheConfig, run  # noqa: E402
from saelab.workspace import Workspace  # noqa: E402
from tests.latents.fixtures import tiny_coders, tiny_lm, tiny_windows  # noqa: E402

CONFIG = CacheConfig(batch_size=2, shard_windows=4, value_dtype="float16")


def _record_writes(root: Path) -> None:
    """Append "name index" to `root/written.rank-R` for each shard this process writes."""
    from saelab.latents import shard

    rank = dist.get_rank() if dist.is_initialized() else 0
    write = shard.ShardBuilder.write

    def recorded(self: shard.ShardBuilder, store_dir: Path) -> shard.ShardRecord:
        record = write(self, store_dir)
        with open(root / f"written.rank-{rank}", "a") as f:
            f.write(f"{store_dir.name} {self.index}\n")
        return record

    shard.ShardBuilder.write = recorded  # type: ignore[method-assign]


def main() -> None:
    torch.set_num_threads(1)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    coders = tiny_coders()
    _record_writes(Path(sys.argv[1]))
    if delay:
        for coder in coders.values():
            encode = coder.encode
            coder.encode = lambda x, _e=encode: (time.sleep(delay), _e(x))[1]  # type: ignore[method-assign]
    run(CONFIG, Workspace(Path(sys.argv[1])), tiny_lm(), tiny_windows(), coders, progress=False)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
