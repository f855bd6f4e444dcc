"""`surprisal`: does the explanation make the example text less surprising to the model?

For each example, the mean token loss of its text after a prefix that states the explanation
is compared with the loss after a neutral prefix; the gain (nats / token) should be larger
where the latent fires. AUC of the gain, activating vs non-activating; prediction = gain > 0.
Needs the model's log-probs of the text itself: the in-process (`transformers`) client only."""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..clients.base import Answer, Client
from ..format import Decode, plain
from .base import Item, record
from .detection import Detection

WITH = "The following text is an example of {explanation}:\n"
WITHOUT = "The following text is an example of something:\n"


class Surprisal(Detection):
    name = "surprisal"

    def score(self, explanation: str, items: Sequence[Item], decode: Decode, client: Client | None = None,
              **_: Any) -> list[dict[str, Any]]:
        if not hasattr(client, "nll"):
            return [record(it, Answer(failed=True, reason="surprisal needs the in-process transformers client"))
                    for it in items]
        texts = [plain(it.example, decode) for it in items]
        with_ = client.nll([WITH.format(explanation=explanation)] * len(texts), texts)
        without = client.nll([WITHOUT] * len(texts), texts)
        out = []
        for it, a, b in zip(items, with_, without):
            gain = b - a
            r = record(it, Answer(prob_yes=1 / (1 + math.exp(-10 * gain))))
            r["prediction"], r["gain_nats"] = int(gain > 0), round(gain, 5)
            r["correct"] = bool(r["prediction"] == it.label)
            out.append(r)
        return out
