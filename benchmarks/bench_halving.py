"""Successive halving vs full-split scoring on a trained supernet: same front, fewer images?

For each seed, the same evolutionary search (NSGA-II over top-1 and a latency model, default the
FLOPs proxy, so that runs are deterministic) runs twice on the checkpoint: once scoring every
child on the full validation split, once with successive halving (eta 3, 3 rungs: 1/9, 1/3,
all). Both go through :func:`nas.search.run_search`, as ``nas search --checkpoint`` does.

Reported per seed and on average: the hypervolume of each front (candidates scored on the full
split; reference point top-1 = 0 and 1.1 x the largest cost evaluated by either run), the
validation images evaluated, the evaluator calls, and the wall time. Target (issue 5): fronts of
equal hypervolume (halving within 1 % of full) for at least 2x fewer images.

Note: every rung recalibrates BatchNorm, so wall time falls less than images do.

    python benchmarks/bench_halving.py [CHECKPOINT] [--budget 60] [--seeds 3] [--latency flops]

CHECKPOINT defaults to checkpoints/demo/supernet/best.pt, the supernet ``make demo`` trains.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the surrogate's small matrices

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from nas.search import SearchConfig, run_search  # noqa: E402
from nas.search.report import front_hypervolume  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", nargs="?", default=str(ROOT / "checkpoints/demo/supernet/best.pt"))
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--latency", default="flops", help="latency spec (default flops)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        print(f"checkpoint not found: {args.checkpoint} (train one: nas train --space "
              "search_spaces/demo.yaml --config recipes/demo.yaml --out checkpoints/demo/supernet)",
              file=sys.stderr)
        return 2
    from nas.latency import make_latency_model
    from nas.search.runner import build_evaluator, build_space
    from nas.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    base = SearchConfig(checkpoint=args.checkpoint, latency=(args.latency,), budget=args.budget,
                        device=args.device)
    space = build_space(base, ckpt)
    model = ckpt["model"]
    latency = [make_latency_model(args.latency, space, in_channels=model["in_channels"],
                                  num_classes=model["num_classes"])]
    rows = []
    for seed in range(args.seeds):
        runs = {}
        for name, eta in (("full", 0), ("halving", 3)):
            # a fresh evaluator per run: no cache shared between the two
            evaluator = build_evaluator(base, space, ckpt, None)
            config = SearchConfig(checkpoint=args.checkpoint, latency=(args.latency,),
                                  budget=args.budget, seed=seed, halving_eta=eta,
                                  device=args.device)
            start = time.perf_counter()
            result = run_search(config, evaluator=evaluator, latency_models=latency,
                                progress=False)
            runs[name] = (result, evaluator.evaluated, time.perf_counter() - start)
        spec = runs["full"][0].specs[0]
        ref = 1.1 * max(c.metrics[spec.cost.key] for r, _, _ in runs.values() for c in r.candidates)
        row = {"seed": seed}
        for name, (result, calls, seconds) in runs.items():
            front = result.fronts[spec.name]
            row[name] = {"hv": front_hypervolume(spec, front, ref), "images": result.images,
                         "calls": calls, "seconds": seconds, "front": len(front)}
        rows.append(row)
        f, h = row["full"], row["halving"]
        print(f"seed {seed}: HV full {f['hv']:.4f} ({f['front']} on the front), halving "
              f"{h['hv']:.4f} ({h['front']}), ratio {h['hv'] / f['hv']:.4f}; images "
              f"{f['images']} vs {h['images']} ({f['images'] / h['images']:.2f}x fewer); "
              f"{f['seconds']:.0f} s vs {h['seconds']:.0f} s", flush=True)
    hv_ratio = statistics.mean(r["halving"]["hv"] for r in rows) / \
        statistics.mean(r["full"]["hv"] for r in rows)
    img_ratio = sum(r["full"]["images"] for r in rows) / sum(r["halving"]["images"] for r in rows)
    time_ratio = sum(r["full"]["seconds"] for r in rows) / sum(r["halving"]["seconds"] for r in rows)
    ok = hv_ratio >= 0.99 and img_ratio >= 2.0
    print(f"\n{'':10} {'mean HV':>9} {'images':>9} {'evaluator calls':>16} {'time s':>8}")
    for name in ("full", "halving"):
        print(f"{name:10} {statistics.mean(r[name]['hv'] for r in rows):9.4f} "
              f"{sum(r[name]['images'] for r in rows):9d} "
              f"{sum(r[name]['calls'] for r in rows):16d} "
              f"{sum(r[name]['seconds'] for r in rows):8.0f}")
    print(f"\nhalving / full: hypervolume {hv_ratio:.4f} (target >= 0.99), images "
          f"{img_ratio:.2f}x fewer (target >= 2), time {time_ratio:.2f}x faster: "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
