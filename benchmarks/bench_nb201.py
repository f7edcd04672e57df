"""Searchers against NAS-Bench-201: published baselines, targets, surrogate on/off.

Every search goes through the same code as ``nas search --table`` (:func:`nas.search.run_search`
with a :class:`~nas.search.TableEvaluator`), sees only the 12-epoch validation signal and the
latency column, and is repeated over seeds 0..N-1 (default 100):

* single objective (maximise ``c10_val_12ep`` / ``c100_val_12ep``), 100 queries: the reported
  figure is the 200-epoch test top-1 (``*_test_200ep``, looked up *after* the search) of the
  candidate with the best validation signal; also shown: that signal, and how often the search
  found the arch with the table's best signal;
* two objectives (maximise ``c10_val_12ep``, minimise ``lat_ms_raspi4`` or ``lat_ms_1080ti_1``),
  200 queries: the hypervolume of the evaluated candidates over the true front's, both computed
  from the table with the reference point (median accuracy of the table, largest latency).

Targets (issue 5): random search within the published 93.70 +- 0.36 (CIFAR-10); evolution mean
>= 94.10 (CIFAR-10) and >= 72.30 (CIFAR-100); multi-objective hypervolume ratio >= 0.97.

    python benchmarks/bench_nb201.py [--table PATH] [--seeds 100] [--workers 2]

The table defaults to ``<repo>/../shared/data/nb201/nb201.csv.gz``.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only cost time

import argparse  # noqa: E402
import multiprocessing as mp  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from nas.pareto import hypervolume  # noqa: E402
from nas.search import SearchConfig, Table, TableEvaluator, run_search  # noqa: E402
from nas.space import SearchSpace  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "nb201.yaml"
DEFAULT_TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201.csv.gz"

# (name, search signal, reported column, searcher, surrogate)
SINGLE = [
    ("c10 random", "c10_val_12ep", "c10_test_200ep", "random", False),
    ("c10 evolution (no surrogate)", "c10_val_12ep", "c10_test_200ep", "evolution", False),
    ("c10 evolution", "c10_val_12ep", "c10_test_200ep", "evolution", True),
    ("c100 random", "c100_val_12ep", "c100_test_200ep", "random", False),
    ("c100 evolution (no surrogate)", "c100_val_12ep", "c100_test_200ep", "evolution", False),
    ("c100 evolution", "c100_val_12ep", "c100_test_200ep", "evolution", True),
]
# (name, latency column, searcher, surrogate)
MULTI = [
    ("raspi4 random", "lat_ms_raspi4", "random", False),
    ("raspi4 NSGA-II (no surrogate)", "lat_ms_raspi4", "evolution", False),
    ("raspi4 NSGA-II", "lat_ms_raspi4", "evolution", True),
    ("1080ti_1 random", "lat_ms_1080ti_1", "random", False),
    ("1080ti_1 NSGA-II (no surrogate)", "lat_ms_1080ti_1", "evolution", False),
    ("1080ti_1 NSGA-II", "lat_ms_1080ti_1", "evolution", True),
]
TARGETS = {
    "c10 random": ("within published 93.70 +- 0.36", lambda m: abs(m - 93.70) <= 0.36),
    "c10 evolution": (">= 94.10", lambda m: m >= 94.10),
    "c100 evolution": (">= 72.30", lambda m: m >= 72.30),
    "raspi4 NSGA-II": (">= 0.97", lambda m: m >= 0.97),
    "1080ti_1 NSGA-II": (">= 0.97", lambda m: m >= 0.97),
}

_STATE: dict = {}


def _setup(table_path: str) -> None:
    """Per worker: the table, the space and one evaluator per accuracy column (read once)."""
    table = Table(table_path)
    space = SearchSpace.from_yaml(SPACE)
    latency = ["lat_ms_raspi4", "lat_ms_1080ti_1"]
    _STATE.update(table=table, space=space, rows={s: i for i, s in enumerate(table.arch_strings)},
                  evaluators={c: TableEvaluator(table, space, c, latency_columns=latency)
                              for c in ("c10_val_12ep", "c100_val_12ep")})


def _single(job: tuple) -> tuple:
    name, signal, report, searcher, surrogate, seed = job
    ev = _STATE["evaluators"][signal]
    config = SearchConfig(space=str(SPACE), table="nb201", accuracy_column=signal,
                          objectives=("top1",), searcher=searcher, budget=100, seed=seed,
                          surrogate=surrogate)
    result = run_search(config, evaluator=ev, latency_models=[], progress=False)
    row = _STATE["rows"][str(result.best.arch)]
    return name, seed, _STATE["table"].column(report)[row], 100 * result.best.metrics["top1"]


def _multi(job: tuple) -> tuple:
    name, column, searcher, surrogate, seed = job
    ev = _STATE["evaluators"]["c10_val_12ep"]
    model = next(m for m in ev.latency_models if m.column_name == column)
    config = SearchConfig(space=str(SPACE), table="nb201", accuracy_column="c10_val_12ep",
                          latency_columns=(column,), searcher=searcher, budget=200, seed=seed,
                          surrogate=surrogate)
    result = run_search(config, evaluator=ev, latency_models=[model], progress=False)
    points = [(-100 * c.metrics["top1"], c.metrics[f"latency_ms.{model.device}"])
              for c in result.candidates]
    return name, seed, hypervolume(points, _reference(column)) / _true_hv(column), None


def _reference(column: str) -> tuple[float, float]:
    acc = _STATE["table"].column("c10_val_12ep")
    return -statistics.median(acc), max(_STATE["table"].column(column))


def _true_hv(column: str) -> float:
    key = ("true_hv", column)
    if key not in _STATE:
        t = _STATE["table"]
        points = list(zip((-a for a in t.column("c10_val_12ep")), t.column(column)))
        _STATE[key] = hypervolume(points, _reference(column))
    return _STATE[key]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", default=str(DEFAULT_TABLE), help="NAS-Bench-201 table")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", choices=["single", "multi"], help="run one part only")
    args = parser.parse_args(argv)
    if not Path(args.table).is_file():
        print(f"table not found: {args.table} (pass --table)", file=sys.stderr)
        return 2
    jobs = []
    if args.only != "multi":
        jobs += [("single", (*s, seed)) for s in SINGLE for seed in range(args.seeds)]
    if args.only != "single":
        jobs += [("multi", (*m, seed)) for m in MULTI for seed in range(args.seeds)]
    start = time.time()
    _setup(args.table)  # before the fork: workers share the parsed table
    with mp.get_context("fork").Pool(args.workers) as pool:
        results = pool.map(_run, jobs, chunksize=4)
    elapsed = time.time() - start
    by_name: dict[str, list] = {}
    for name, _seed, value, signal in results:
        by_name.setdefault(name, []).append((value, signal))
    print(f"NAS-Bench-201, {args.seeds} seeds per setting, {elapsed:.0f} s on {args.workers} "
          "workers\n")
    print(f"{'setting':34} {'figure':>18} {'best signal':>12}  target")
    failed = 0
    for name, values in by_name.items():
        figs = [v for v, _ in values]
        mean, std = statistics.mean(figs), statistics.pstdev(figs)
        unit = "test %" if values[0][1] is not None else "HV ratio"
        text = f"{mean:.2f} +- {std:.2f}" if unit == "test %" else f"{mean:.4f} +- {std:.4f}"
        signal = f"{statistics.mean(s for _, s in values):.2f}" if values[0][1] is not None else ""
        target = ""
        if name in TARGETS:
            desc, ok = TARGETS[name]
            target = f"{desc}: {'PASS' if ok(mean) else 'FAIL'}"
            failed += not ok(mean)
        print(f"{name:34} {text:>18} {signal:>12}  {target}")
    print("\nfigure: 200-epoch test top-1 (%) of the best-signal candidate, or hypervolume over "
          "the true front's; best signal: mean 12-epoch validation top-1 (%) of that candidate")
    return 1 if failed else 0


def _run(job: tuple) -> tuple:
    kind, args = job
    return _single(args) if kind == "single" else _multi(args)


if __name__ == "__main__":
    sys.exit(main())
