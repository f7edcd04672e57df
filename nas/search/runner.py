"""Running a search end to end: metrics pipeline, history, resume, logs and output files.

:func:`run_search` builds the pieces a :class:`~nas.search.config.SearchConfig` names (space,
accuracy evaluator, latency models, problem, searcher), runs the searcher against an
:class:`~nas.search.oracle.Oracle`, and writes into the output folder:

=====================  ======================================================================
``config.yaml``        the resolved config (and the space); a restart must match it
``history.jsonl``      every evaluation in order, one JSON object per line: ``arch`` (the
                       canonical string), every metric (``top1`` as a fraction,
                       ``latency_ms.DEVICE``, ``params``, ``flops``, ``loss``, and with
                       successive halving ``val_images`` / ``images``), ``batch`` and
                       ``batch_size`` (the evaluator call it came from)
``search_log.jsonl``   one line per batch: evaluations so far, best top-1, hypervolume of
                       each front (reference fixed by the first batch), images spent
``pareto_NAME.*``      each front as JSON, CSV and PNG (see :mod:`nas.search.report`)
``summary.json``       the best candidate, front sizes and hypervolumes, why the search stopped
=====================  ======================================================================

Resume. The searchers are deterministic given their seed and the metrics they receive, so a
restart replays ``history.jsonl`` batch by batch through the oracle (no evaluator call) and the
searcher reaches exactly the state it had, then goes on. A batch is appended to the history in
one write + fsync once fully evaluated, and a torn or incomplete last batch is dropped on load,
so a kill at any point loses at most the batch in flight. A restart with other settings is
refused (the resolved config is compared with ``config.yaml``).

Scale. Under ``torchrun`` every rank runs the same searcher; the supernet evaluator shards each
batch over the ranks and gathers the results, latencies are taken from rank 0, and only rank 0
writes files.

This module imports torch only to talk to ``torch.distributed`` when a process group exists, or
to build a supernet evaluator from a checkpoint.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from nas.candidate import TOP1, Candidate
from nas.checkpoint import atomic_write_text
from nas.config import to_mapping
from nas.errors import ConfigError
from nas.search.config import SearchConfig, default_objectives, resolve
from nas.search.evolution import NSGA2, RegularizedEvolution, check_feasible
from nas.search.halving import IMAGES, VAL_IMAGES, Halving
from nas.search.history import LocalComm, Pipeline, append_text, default_comm, load_history
from nas.search.objectives import Problem, parse_constraint
from nas.search.oracle import Oracle
from nas.search.random import RandomSearch
from nas.search.report import (
    FrontSpec, front, front_hypervolume, front_specs, summary_table, write_front,
)
from nas.space import SearchSpace

HISTORY, CONFIG, LOG, SUMMARY = "history.jsonl", "config.yaml", "search_log.jsonl", "summary.json"
# Settings that change how, not what, is computed: a restart may change them.
_NOT_COMPARED = ("device",)


# ------------------------------------------------------------------------------ building


def build_space(config: SearchConfig, checkpoint: dict | None) -> SearchSpace:
    """The space of the YAML file, or of the checkpoint; both must agree when both are given."""
    space = SearchSpace.from_yaml(config.space) if config.space else None
    if checkpoint is not None:
        ckpt_space = SearchSpace.from_config(checkpoint["space"], source=str(config.checkpoint))
        if space is not None and space.to_config() | {"description": ""} != \
                ckpt_space.to_config() | {"description": ""}:
            raise ConfigError(f"--space {config.space} differs from the space the checkpoint "
                              f"{config.checkpoint} was trained on ({ckpt_space.name!r}); leave "
                              "--space out to use the checkpoint's")
        space = space or ckpt_space
    return space


def build_evaluator(config: SearchConfig, space: SearchSpace, checkpoint: dict | None,
                    out: Path | None):
    """The accuracy evaluator: a :class:`~nas.search.table.TableEvaluator` or a supernet's."""
    if config.table is not None:
        from nas.search.table import TableEvaluator

        return TableEvaluator(config.table, space, config.accuracy_column,
                              latency_columns=config.latency_columns)
    from nas.evaluate import SupernetEvaluator

    return SupernetEvaluator.from_checkpoint(
        config.checkpoint, device=config.device, checkpoint=checkpoint,
        calib_images=config.calib_images,
        cache_path=None if out is None else out / "eval_cache.jsonl")


def build_latency_models(config: SearchConfig, space: SearchSpace, checkpoint: dict | None,
                         evaluator) -> list:
    """The ``latency`` specs' models, then the evaluator's own (a table's latency columns)."""
    models = []
    if config.latency:
        from nas.latency import make_latency_model

        model_args = checkpoint.get("model", {}) if checkpoint else {}
        models = [make_latency_model(spec, space, in_channels=model_args.get("in_channels"),
                                     num_classes=model_args.get("num_classes"))
                  for spec in config.latency]
    models += list(getattr(evaluator, "latency_models", []) if config.table else [])
    devices = [m.device for m in models]
    for d in devices:
        if devices.count(d) > 1:
            raise ConfigError(f"two latency models measure device {d!r}; label one with "
                              "SPEC@LABEL")
    return models


def build_searcher(config: SearchConfig):
    """The searcher of a resolved config."""
    kind = config.kind()
    cls = {"random": RandomSearch, "rea": RegularizedEvolution, "nsga2": NSGA2}[kind]
    return cls(**config.searcher_options())


def resolve_problem(config: SearchConfig, devices: Sequence[str]) -> tuple[SearchConfig, Problem]:
    """The resolved config and its problem; every latency objective or constraint must have a
    latency model for its device."""
    constraints = tuple(parse_constraint(c) for c in config.constraints)
    constrained = tuple(c.metric.device for c in constraints if c.metric.device)
    objectives = config.objectives or default_objectives(tuple(devices), config.constraints,
                                                         constrained)
    config = resolve(config, objectives=objectives)
    problem = Problem.parse(config.objectives, config.constraints)
    missing = [d for d in problem.devices if d not in devices]
    if missing:
        raise ConfigError(f"no latency model for device {missing[0]!r} (named by an objective or "
                          f"constraint); latency models: {', '.join(devices) or 'none'} (add "
                          "--latency SPEC or --latency-column COL)")
    return config, problem


# ------------------------------------------------------------------------------ running


@dataclass
class SearchResult:
    """What :func:`run_search` returns.

    Attributes:
        config: the resolved config.
        problem: its objectives and constraints.
        candidates: every evaluation, in order (replayed ones included).
        fronts: front name (device, ``params``...) -> its candidates by increasing cost.
        best: the eligible candidate best on the first objective (None if none is eligible:
            feasible and scored on the full validation split).
        stopped: ``budget`` or ``space exhausted``.
        replayed: evaluations taken from an existing history (not re-evaluated).
    """

    config: SearchConfig
    problem: Problem
    candidates: list[Candidate]
    fronts: dict[str, list[Candidate]] = field(default_factory=dict)
    best: Candidate | None = None
    stopped: str = "budget"
    replayed: int = 0
    specs: list[FrontSpec] = field(default_factory=list)

    @property
    def images(self) -> int:
        """Validation images spent by the supernet evaluator (0 for a table)."""
        return int(sum(c.metrics.get(IMAGES, 0.0) for c in self.candidates))


def _config_doc(config: SearchConfig, space: SearchSpace) -> dict:
    return {"search": to_mapping(config), "space": space.to_config()}


def _differences(old: Any, new: dict) -> list[str]:
    if not isinstance(old, dict) or not isinstance(old.get("search"), dict):
        return ["config.yaml is not a search config"]
    diff = [f"{k}: {old['search'].get(k)!r} -> {v!r}" for k, v in new["search"].items()
            if k not in _NOT_COMPARED and old["search"].get(k) != v]
    if old.get("space") != new["space"]:
        diff.append("the search space")
    return diff


def prepare_out(out: Path, doc: dict) -> list[list[dict]]:
    """Checks or creates the output folder; returns the history to replay.

    Raises:
        ConfigError: the folder holds a search with other settings, or a history without its
            config.
    """
    cfg = out / CONFIG
    if cfg.is_file():
        try:
            old = yaml.safe_load(cfg.read_text())
        except yaml.YAMLError:
            old = None
        diff = _differences(old, doc)
        if diff:
            raise ConfigError(f"{out} holds a search with other settings ({'; '.join(diff)}); "
                              "restart with the same arguments to resume it, or use another --out")
        return load_history(out / HISTORY)
    if (out / HISTORY).exists():
        raise ConfigError(f"{out / HISTORY} exists without {CONFIG}; refusing to mix searches "
                          "(use another --out)")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cfg, yaml.safe_dump(doc, sort_keys=False))
    return []


class _Monitor:
    """After each batch: the progress bar and a line of ``search_log.jsonl``."""

    def __init__(self, result: SearchResult, eligible: Callable, log: Path | None, bar):
        self.result, self.eligible, self.log, self.bar = result, eligible, log, bar
        self.refs: dict[str, float] = {}
        self.batch = 0

    def __call__(self, batch: list[Candidate]) -> None:
        if not self.refs:  # fixed by the first batch, so generations compare
            for spec in self.result.specs:
                self.refs[spec.name] = 1.1 * max(c.metrics[spec.cost.key] for c in batch)
        good = self.eligible(self.result.candidates)
        hv = {s.name: front_hypervolume(s, good, self.refs[s.name]) for s in self.result.specs}
        best = max((c.metrics[TOP1] for c in good), default=None)
        entry = {"batch": self.batch, "evaluated": len(self.result.candidates),
                 "feasible": len(good), "best_top1": best, "hypervolume": hv,
                 "hypervolume_reference": {TOP1: 0.0, **self.refs},
                 "images": self.result.images}
        self.batch += 1
        if self.log is not None:
            append_text(self.log, json.dumps(entry) + "\n", sync=False)
        if self.bar is not None:
            self.bar.update(len(batch))
            post = {"top1": "-" if best is None else f"{100 * best:.2f}%"}
            post.update({f"hv_{k}": f"{v:.4g}" for k, v in hv.items()})
            self.bar.set_postfix(post, refresh=False)


def run_search(config: SearchConfig, *, out: str | Path | None = None, evaluator=None,
               latency_models: Sequence | None = None, progress: bool = True,
               comm: LocalComm | None = None) -> SearchResult:
    """Runs (or resumes) a search; see the module docstring for the files written to ``out``.

    Args:
        config: the search config (``None`` fields resolved here).
        out: the output folder (None: nothing is written, nothing resumed).
        evaluator: the accuracy evaluator (default: built from ``config``).
        latency_models: the latency models (default: built from ``config``).
        progress: show a progress bar (rank 0 only).
        comm: the ranks (default: the initialised ``torch.distributed`` group, if any).

    Raises:
        NASError: bad settings, a folder holding another search, a missing table column or
            arch, infeasible constraints (:class:`~nas.search.evolution.InfeasibleError`).
    """
    comm = comm or default_comm()
    out = Path(out) if out is not None else None
    checkpoint = None
    if config.checkpoint is not None:
        from nas.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(config.checkpoint)
    space = build_space(config, checkpoint)
    if evaluator is None:
        evaluator = build_evaluator(config, space, checkpoint, out)
    if latency_models is None:
        latency_models = build_latency_models(config, space, checkpoint, evaluator)
    config, problem = resolve_problem(config, [m.device for m in latency_models])
    searcher = build_searcher(config)
    replay: list[list[dict]] = []
    if out is not None:
        status = None
        if comm.rank == 0:
            try:
                status = ("ok", prepare_out(out, _config_doc(config, space)))
            except ConfigError as exc:
                status = ("error", str(exc))
        kind, payload = comm.broadcast(status)
        if kind == "error":
            raise ConfigError(payload)
        replay = payload
    halving = Halving(config.halving_eta, config.halving_rungs) if config.halving_eta else None
    full = getattr(evaluator, "num_val_images", None) if config.checkpoint else None
    pipeline = Pipeline(evaluator, latency_models, replay=replay,
                        history=out / HISTORY if out else None, comm=comm, halving=halving,
                        full_images=full)

    def eligible(cands: Sequence[Candidate]) -> list[Candidate]:
        return [c for c in cands if problem.feasible(c.metrics)
                and c.metrics.get(VAL_IMAGES, full) == full]

    result = SearchResult(config, problem, [], specs=front_specs(
        [m.device for m in latency_models], problem.objectives))
    main = comm.rank == 0
    log = out / LOG if out is not None and main else None
    if log is not None:
        atomic_write_text(log, "")  # regenerated from the start: replayed batches log again
    bar = None
    if progress and main:
        from tqdm import tqdm

        bar = tqdm(total=config.budget, desc=f"search ({config.kind()})", unit="arch")
    watch = _Monitor(result, eligible, log, bar) if (log or bar) else None
    oracle = Oracle(space, problem, pipeline, config.budget, on_batch=watch,
                    known=pipeline.known_latencies)
    result.candidates = oracle.candidates
    try:
        searcher.run(oracle, random.Random(config.seed))
        check_feasible(oracle, None)  # also for searchers that do not steer (random)
    finally:
        if bar is not None:
            bar.close()
    result.replayed = pipeline.replayed
    result.stopped = "budget" if len(oracle.candidates) >= config.budget else "space exhausted"
    good = eligible(oracle.candidates)
    result.fronts = {s.name: front(s, good) for s in result.specs}
    first = problem.objectives[0]
    result.best = min(good, key=lambda c: first.loss(c.metrics), default=None)
    if out is not None and main:
        write_outputs(out, result, watch.refs if watch else {})
    return result


def write_outputs(out: Path, result: SearchResult, refs: dict[str, float]) -> None:
    """The front files and ``summary.json``."""
    good = [c for f in result.fronts.values() for c in f]
    fronts = {}
    for spec in result.specs:
        members = result.fronts[spec.name]
        ref = refs.get(spec.name) or 1.1 * max((c.metrics[spec.cost.key] for c in good), default=1.0)
        write_front(out, spec, result.candidates, members, ref)
        fronts[spec.name] = {"size": len(members), "hypervolume": front_hypervolume(spec, members, ref),
                             "reference_point": {TOP1: 0.0, spec.cost.key: ref}}
    summary = {"evaluated": len(result.candidates), "budget": result.config.budget,
               "stopped": result.stopped, "replayed": result.replayed, "images": result.images,
               "objectives": [o.name for o in result.problem.objectives],
               "constraints": [c.text for c in result.problem.constraints],
               "best": result.best.to_json() if result.best else None, "fronts": fronts}
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=1) + "\n")


def summary_text(result: SearchResult) -> str:
    """The terminal summary: how the search ended, the best candidate, each front's table."""
    lines = [f"evaluated {len(result.candidates)} archs ({result.replayed} from the history), "
             f"stopped: {result.stopped}"]
    if result.images:
        lines[0] += f", {result.images} validation images"
    if result.best is not None:
        m = result.best.metrics
        extra = "".join(f", {k} {v:.4g}" for k, v in m.items() if k.startswith("latency_ms."))
        lines.append(f"best top-1: {100 * m[TOP1]:.2f}% ({result.best.arch}{extra})")
    for spec in result.specs:
        lines.append(summary_table(spec, result.fronts[spec.name]))
    return "\n".join(lines)
