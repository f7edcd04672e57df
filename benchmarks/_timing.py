"""Timing shared by the benchmarks (imported as a sibling module: run the benchmarks as
``python benchmarks/bench_NAME.py``)."""
import statistics
import time


def time_pair(run_a, run_b, repeats: int) -> tuple[float, float]:
    """Median seconds of ``run_a`` and ``run_b``, called alternately (A B A B ...) after one
    warm-up each, so that a drift of the machine's speed hits both alike."""
    run_a(), run_b()
    ta, tb = [], []
    for _ in range(repeats):
        for run, out in ((run_a, ta), (run_b, tb)):
            start = time.perf_counter()
            run()
            out.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)
