"""What the command line shows on stderr beside its results, set once before any command runs.

- saelab's log: WARNING and above; INFO too with `-v`.
- Progress: a live bar on a terminal; anywhere else (a log file, CI, `nohup`, a cluster job) a plain
  `saelab.progress` line every $SAELAB_PROGRESS_EVERY seconds (default 30) and at the end of each long
  stage, shown without `-v` (see `saelab.progress`). Log lines print above a live bar, never through it.
- The Hugging Face libraries' own warnings and progress bars (transformers, huggingface_hub, datasets,
  sentence-transformers): only with `-v`. saelab says what they do (loading, downloading) itself.
"""

from __future__ import annotations

import logging
import os
import warnings

QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
             "HF_HUB_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
             "DATASETS_VERBOSITY": "error", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
"""Read by those libraries when first imported, which is after this: commands import them in their bodies."""
THIRD_PARTY = ("transformers", "huggingface_hub", "datasets", "sentence_transformers", "accelerate")
"""Their loggers (for a library imported already, where the environment comes too late) and warning modules."""


class _Formatter(logging.Formatter):
    """Progress lines as they are (`train: 34,816/65,536 tok (53%), …`); every other record with its level and
    logger (`WARNING saelab.train.run: …`)."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage() if record.name == "saelab.progress" else super().format(record)


def configure_output(verbose: bool) -> None:
    """Set saelab's log level and handler, show progress lines, and quiet the third-party libraries unless
    `verbose`. A variable the user set (TRANSFORMERS_VERBOSITY=info, HF_HUB_DISABLE_PROGRESS_BARS=0) wins."""
    from ..progress import StderrHandler

    handler = StderrHandler()
    handler.setFormatter(_Formatter())
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
    logging.getLogger("saelab.progress").setLevel(logging.INFO)
    if verbose:
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=rf"({'|'.join(THIRD_PARTY)})(\.|$)")
