"""Successive halving of a generation: cheap scores for all, the full validation split for the best.

Scoring a subnet costs BN recalibration plus one pass over the validation images. The children
of a generation are first scored on a small prefix of the validation split; only the best
``1/eta`` (by the search problem's own ranking: constrained non-dominated sorting and crowding
for several objectives, the objective for one) go on to ``eta`` times more images, and so on up
to the full split. A candidate's recorded metrics are those of the last rung it reached, with

* ``val_images``: the validation images behind its recorded top-1 (the full split when
  promoted to the end),
* ``images``: the validation images spent on it over all rungs.

With ``eta=3`` and 3 rungs (1/9, 1/3, all) a generation costs about a third of scoring every
child on the full split. Latency, parameters and FLOPs do not depend on the images; they are
computed once, before the first rung, so they take part in the ranking.

This module is torch-free: it calls an ``evaluate(archs, num_val_images)`` function.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from nas.space import Arch

VAL_IMAGES = "val_images"
IMAGES = "images"


@dataclass(frozen=True)
class Halving:
    """The halving schedule.

    Attributes:
        eta: keep the best ``1/eta`` at each rung, and give them ``eta`` times more images.
        rungs: fidelity levels, the last one being the full validation split.
    """

    eta: int = 3
    rungs: int = 3

    def __post_init__(self):
        if self.eta < 2:
            raise ValueError(f"halving eta must be >= 2, got {self.eta}")
        if self.rungs < 1:
            raise ValueError(f"halving rungs must be >= 1, got {self.rungs}")

    def images(self, full: int) -> list[int]:
        """Validation images of each rung, e.g. full=900, eta=3, rungs=3 -> [100, 300, 900]."""
        return [max(1, math.ceil(full / self.eta ** (self.rungs - 1 - k))) for k in range(self.rungs)]


def successive_halving(archs: Sequence[Arch], evaluate: Callable[[list[Arch], int], list[dict]],
                       order: Callable[[list[dict]], list[int]], full_images: int,
                       schedule: Halving, extra: Sequence[dict] | None = None) -> list[dict]:
    """Scores ``archs`` by successive halving (see the module docstring).

    Args:
        archs: the generation.
        evaluate: ``evaluate(archs, num_val_images) -> metrics dicts``.
        order: ranks a list of metrics dicts, best first (indices).
        full_images: the size of the full validation split.
        schedule: the halving schedule.
        extra: per arch, metrics that do not depend on the images (latencies), merged in before
            ranking.

    Returns:
        One metrics dict per arch, in order, with ``val_images`` and ``images``.
    """
    archs = list(archs)
    extra = list(extra) if extra is not None else [{} for _ in archs]
    results: list[dict | None] = [None] * len(archs)
    spent = [0] * len(archs)
    alive = list(range(len(archs)))
    rungs = schedule.images(full_images)
    for level, images in enumerate(rungs):
        last = level == len(rungs) - 1
        keep = len(alive) if last else math.ceil(len(alive) / schedule.eta)
        if not last and keep == len(alive):
            continue  # nobody would be dropped: go straight to more images
        metrics = evaluate([archs[i] for i in alive], images)
        for i, m in zip(alive, metrics):
            spent[i] += images
            results[i] = {**m, **extra[i], VAL_IMAGES: images, IMAGES: spent[i]}
        if not last:
            ranked = order([results[i] for i in alive])
            alive = [alive[j] for j in sorted(ranked[:keep])]
    return results  # type: ignore[return-value]
