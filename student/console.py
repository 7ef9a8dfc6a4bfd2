"""What `student train` shows while it runs: the running loss and its terms, next to the count of
steps (`pipeline.toolkit.progress`: a bar on a terminal, a line every `log_every` steps in a log).

    train: 40/200 steps (20%), 1.9 steps/s, elapsed 21s, left 1m24s | loss 3.12 sc 1.41 ...

The running value of a term is its mean over the last `window` steps taken (the steps between two
records of `metrics.jsonl`), each step's value the mean over its micro-batches, as recorded.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch


class RunningTerms:
    """The loss terms of the last `window` steps, and their means as a status text."""

    def __init__(self, window: int) -> None:
        self.steps: deque[dict[str, float]] = deque(maxlen=max(1, window))

    def add(self, micro: list[tuple[dict[str, torch.Tensor], Any]]) -> None:
        """Count one step from its micro-batches' `(terms, teacher)` pairs (one read from the
        device for all terms)."""
        names = list(micro[0][0])
        values = torch.stack([torch.stack([t[n].float() for n in names]) for t, _ in micro])
        self.steps.append(dict(zip(names, values.mean(0).tolist(), strict=True)))

    def means(self) -> dict[str, float]:
        """Each term's mean over the steps held: `loss` first, then the terms in their order."""
        if not self.steps:
            return {}
        names = sorted(self.steps[-1], key=lambda n: n != "loss")  # stable: keeps the order
        return {n: sum(s.get(n, 0.0) for s in self.steps) / len(self.steps) for n in names}

    def status(self) -> str:
        """E.g. `loss 0.412 sc 0.201 lg 0.113 feat 0.0201 grad 0.0783`."""
        return " ".join(f"{name} {value:.4g}" for name, value in self.means().items())
