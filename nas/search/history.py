"""The history of a search, and the evaluation path that writes and replays it.

``history.jsonl`` holds every evaluation in order, one JSON object per line: ``arch`` (the
canonical string), every metric as a float, ``batch`` and ``batch_size`` (the evaluator call it
came from). A batch is appended in one write + fsync once it is fully evaluated, so a kill at
any point leaves complete batches and at most one torn or incomplete last batch, which
:func:`load_history` drops.

:class:`Pipeline` is the function the oracle calls to evaluate a batch: it first replays the
history batch by batch (a resumed search asks for exactly the same archs, since searchers are
deterministic given their seed and the metrics they receive), then evaluates new batches with
the accuracy evaluator (with successive halving when asked) and the latency models, and
records them. Every metric is a float, as it is after a JSON round trip, so a replayed search
sees exactly what the original one saw.

Under ``torch.distributed`` (:class:`TorchComm`) every rank evaluates (the supernet evaluator
shards the batch), rank 0's metrics are broadcast so that all ranks stay in step, and only rank
0 writes. This module imports torch only when a process group is already initialised.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from nas.candidate import latency_key
from nas.checkpoint import atomic_write_text
from nas.errors import ConfigError
from nas.search.halving import IMAGES, VAL_IMAGES, Halving, successive_halving
from nas.space import Arch

_BOOKKEEPING = ("arch", "batch", "batch_size")


# ------------------------------------------------------------------------------ distributed


class LocalComm:
    """A single process: rank 0 of 1."""

    rank, world = 0, 1

    def broadcast(self, obj: Any) -> Any:
        return obj


class TorchComm(LocalComm):
    """The ranks of an initialised ``torch.distributed`` group; objects come from rank 0."""

    def __init__(self):
        import torch.distributed as dist

        self._dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def broadcast(self, obj: Any) -> Any:
        box = [obj if self.rank == 0 else None]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]


def default_comm() -> LocalComm:
    """TorchComm when this process is in an initialised group of several ranks."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized() \
            and dist.get_world_size() > 1:
        return TorchComm()
    return LocalComm()


# ------------------------------------------------------------------------------ history


def load_history(path: Path) -> list[list[dict]]:
    """The complete batches of a history file, in order; a torn or incomplete last batch is
    dropped (and cut from the file), as a kill mid-write leaves it.

    Raises:
        ConfigError: a line in the middle of the file that is not a record of this format.
    """
    if not path.is_file():
        return []
    lines = path.read_text().splitlines(keepends=True)
    batches: list[list[dict]] = []
    kept = 0
    for no, line in enumerate(lines, start=1):
        try:
            if not line.endswith("\n"):
                raise ValueError("torn line")
            rec = json.loads(line)
            ok = isinstance(rec, dict) and isinstance(rec.get("arch"), str) \
                and isinstance(rec.get("batch"), int) and isinstance(rec.get("batch_size"), int)
        except ValueError:
            ok = False
        if not ok:
            if no == len(lines):
                break
            raise ConfigError(f"{path}:{no}: not a history record of this format")
        if not batches or len(batches[-1]) == batches[-1][0]["batch_size"]:
            if rec["batch"] != len(batches):
                raise ConfigError(f"{path}:{no}: batch {rec['batch']} where {len(batches)} was "
                                  "expected; the history is damaged")
            batches.append([])
        batches[-1].append(rec)
        kept = no
    if batches and len(batches[-1]) < batches[-1][0]["batch_size"]:
        kept -= len(batches.pop())
    if kept < len(lines):
        atomic_write_text(path, "".join(lines[:kept]))
    return batches


def _record_metrics(rec: dict) -> dict[str, float]:
    return {k: float(v) for k, v in rec.items() if k not in _BOOKKEEPING}


def append_text(path: Path, text: str, sync: bool) -> None:
    """Appends ``text`` in one write (and fsyncs it when ``sync``)."""
    with open(path, "a") as f:
        f.write(text)
        f.flush()
        if sync:
            os.fsync(f.fileno())


# ------------------------------------------------------------------------------ evaluation


class Pipeline:
    """The oracle's evaluate function: replay the history, else evaluate and record.

    Accuracy comes from one ``evaluator.evaluate(archs)`` call per batch (per rung with
    successive halving), latency from each latency model; every value is a float, as it will be
    after a JSON round trip, so a replayed search sees exactly what the original one saw.
    """

    def __init__(self, evaluator, latency_models: Sequence, *, replay: list[list[dict]],
                 history: Path | None, comm: LocalComm, halving: Halving | None,
                 full_images: int | None):
        self.evaluator, self.latency_models = evaluator, list(latency_models)
        self.replay, self.history, self.comm = replay, history, comm
        self.halving, self.full_images = halving, full_images
        self.batches = 0
        self.replayed = 0

    def __call__(self, archs: list[Arch], order: Callable) -> list[dict]:
        texts = [str(a) for a in archs]
        if self.batches < len(self.replay):
            recs = self.replay[self.batches]
            if [r["arch"] for r in recs] != texts:
                raise ConfigError(
                    f"the history diverges from the search at batch {self.batches} (expected "
                    f"{recs[0]['arch']}..., got {texts[0]}...): the searcher, the space or the "
                    "metrics source changed since it was written; use a new output folder")
            self.batches += 1
            self.replayed += len(recs)
            return [_record_metrics(r) for r in recs]
        metrics = self.comm.broadcast(self._evaluate(archs, order))
        if self.history is not None and self.comm.rank == 0:
            lines = "".join(json.dumps({"arch": t, **m, "batch": self.batches,
                                        "batch_size": len(archs)}) + "\n"
                            for t, m in zip(texts, metrics))
            append_text(self.history, lines, sync=True)
        self.batches += 1
        return metrics

    def known_latencies(self, archs: list[Arch]) -> dict[str, list[float]]:
        """Per metric key, the latencies of ``archs`` on the devices whose models answer for
        free (``cheap``: a lookup table, a per-arch table, the FLOPs proxy); nothing is
        evaluated or recorded. Measured models are asked about evaluated archs only."""
        return {latency_key(m.device): [float(m.latency_ms(a)) for a in archs]
                for m in self.latency_models if getattr(m, "cheap", False)}

    def _evaluate(self, archs: list[Arch], order: Callable) -> list[dict]:
        lat = [{latency_key(m.device): float(m.latency_ms(a)) for m in self.latency_models}
               for a in archs]
        if self.halving is not None and len(archs) > 1:
            out = successive_halving(
                archs, lambda sub, n: self.evaluator.evaluate(sub, num_val_images=n), order,
                self.full_images, self.halving, extra=lat)
        else:
            out = [{**m, **l} for m, l in zip(self.evaluator.evaluate(archs), lat)]
            if self.full_images is not None:
                out = [{**m, VAL_IMAGES: self.full_images, IMAGES: self.full_images} for m in out]
        return [{k: float(v) for k, v in m.items()} for m in out]
