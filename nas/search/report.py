"""What a search leaves behind: per-device Pareto fronts (JSON, CSV, PNG) and a summary table.

A *front* here is always 2-D: top-1 (maximised) against one cost, the latency of one device
(``pareto_<device>.*``), or parameters / FLOPs when the search has no latency model
(``pareto_params.*``). It is taken over the candidates that satisfy the constraints and were
scored on the full validation split (successive halving leaves some on a prefix only).

Hypervolumes use a reference point of top-1 = 0 and a cost fixed by the caller (the search log
fixes it from the first generation, so that values are comparable across generations).

Files are written atomically (:func:`nas.checkpoint.atomic_write_text`). The plot uses
matplotlib's Agg backend (no display needed). No torch code here.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from nas.candidate import FLOPS, PARAMS, TOP1, Candidate
from nas.checkpoint import atomic_write_bytes, atomic_write_text
from nas.pareto import hypervolume, pareto_front
from nas.search.halving import VAL_IMAGES
from nas.search.objectives import Objective, parse_objective

_TOP1 = parse_objective("top1")


@dataclass(frozen=True)
class FrontSpec:
    """One 2-D front: top-1 against ``cost`` (a latency, params or FLOPs objective)."""

    name: str        # file stem suffix: the device name, "params" or "flops"
    cost: Objective

    @classmethod
    def for_cost(cls, text: str) -> "FrontSpec":
        cost = parse_objective(text)
        return cls(cost.device or cost.name, cost)


def front_specs(devices: Sequence[str], objectives: Sequence[Objective]) -> list[FrontSpec]:
    """A front per latency device; without any, one per params/FLOPs objective (else params)."""
    if devices:
        return [FrontSpec.for_cost(f"latency:{d}") for d in devices]
    costs = [o.name for o in objectives if o.key in (PARAMS, FLOPS)]
    return [FrontSpec.for_cost(c) for c in costs or ["params"]]


def front_points(spec: FrontSpec, candidates: Sequence[Candidate]) -> list[tuple[float, float]]:
    """(-top1, cost) of each candidate: the minimisation form the Pareto functions take."""
    return [(-c.metrics[TOP1], c.metrics[spec.cost.key]) for c in candidates]


def front(spec: FrontSpec, candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates on the front, by increasing cost (duplicates of a point kept once)."""
    points = front_points(spec, candidates)
    members, seen = [], set()
    for i in pareto_front(points):
        if points[i] not in seen:
            seen.add(points[i])
            members.append(candidates[i])
    return sorted(members, key=lambda c: (c.metrics[spec.cost.key], -c.metrics[TOP1]))


def front_hypervolume(spec: FrontSpec, candidates: Sequence[Candidate], ref_cost: float) -> float:
    """Hypervolume of the candidates in (top-1 fraction, cost) above top-1 = 0, below ref_cost."""
    return hypervolume(front_points(spec, candidates), (0.0, ref_cost))


def write_front(out: Path, spec: FrontSpec, candidates: Sequence[Candidate],
                members: Sequence[Candidate], ref_cost: float) -> None:
    """Writes ``pareto_<name>.json``, ``.csv`` and ``.png`` into ``out``."""
    stem = out / f"pareto_{spec.name}"
    data = {
        "objectives": [{"metric": TOP1, "maximize": True, "unit": "fraction"},
                       {"metric": spec.cost.key, "maximize": False, "label": spec.cost.label}],
        "reference_point": {TOP1: 0.0, spec.cost.key: ref_cost},
        "hypervolume": front_hypervolume(spec, members, ref_cost),
        "evaluated": len(candidates),
        "front": [c.to_json() for c in members],
    }
    atomic_write_text(stem.with_suffix(".json"), json.dumps(data, indent=1) + "\n")
    keys = [TOP1, spec.cost.key] + sorted({k for c in members for k in c.metrics}
                                          - {TOP1, spec.cost.key})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["arch"] + keys)
    for c in members:
        writer.writerow([str(c.arch)] + [repr(float(c.metrics[k])) if k in c.metrics else ""
                                         for k in keys])
    atomic_write_text(stem.with_suffix(".csv"), buf.getvalue())
    png = _plot(spec, candidates, members)
    atomic_write_bytes(stem.with_suffix(".png"), lambda f: f.write(png))


def _plot(spec: FrontSpec, candidates: Sequence[Candidate], members: Sequence[Candidate]) -> bytes:
    """The PNG of all evaluated candidates and the front (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    # Successive halving scores most candidates on a subset of the validation images only: a
    # noisier top-1, drawn apart so that it is not read as comparable to the front's.
    full = max((c.metrics.get(VAL_IMAGES, 0) for c in candidates), default=0)
    partial = [c for c in candidates if c.metrics.get(VAL_IMAGES, full) < full]
    complete = [c for c in candidates if c.metrics.get(VAL_IMAGES, full) >= full]
    for group, style, label in ((partial, dict(s=8, c="0.8", marker="x"),
                                 f"scored on a subset of the validation images ({len(partial)})"),
                                (complete, dict(s=10, c="0.45"), f"evaluated ({len(complete)})")):
        if group:
            ax.scatter([spec.cost.display(c.metrics[spec.cost.key]) for c in group],
                       [_TOP1.display(c.metrics[TOP1]) for c in group], label=label, **style)
    fx = [spec.cost.display(c.metrics[spec.cost.key]) for c in members]
    fy = [_TOP1.display(c.metrics[TOP1]) for c in members]
    ax.step(fx, fy, where="post", c="tab:red", lw=1.2)
    ax.scatter(fx, fy, s=24, c="tab:red", zorder=3, label=f"Pareto front ({len(members)})")
    ax.set_xlabel(spec.cost.label)
    ax.set_ylabel(_TOP1.label)
    ax.set_title(f"top-1 vs {spec.cost.label}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def summary_table(spec: FrontSpec, members: Sequence[Candidate], limit: int = 12) -> str:
    """A text table of a front (at most ``limit`` rows, spread over it)."""
    rows = list(members)
    if len(rows) > limit:
        step = (len(rows) - 1) / (limit - 1)
        rows = [rows[round(i * step)] for i in range(limit)]
    head = f"{'top-1 %':>8}  {spec.cost.label:>24}  {'params M':>9}  arch"
    lines = [f"Pareto front: top-1 vs {spec.cost.label} ({len(members)} candidates)", head]
    for c in rows:
        params = c.metrics.get(PARAMS)
        lines.append(f"{100 * c.metrics[TOP1]:8.2f}  {spec.cost.display(c.metrics[spec.cost.key]):24.4g}"
                     f"  {'' if params is None else f'{params / 1e6:9.3f}'}  {c.arch}")
    return "\n".join(lines)
