"""``nas demo``: the whole journey on the embedded data, in one command.

Trains a small supernet on ``fashion-mnist-small`` with ``search_spaces/demo.yaml``, profiles
this CPU (a latency lookup table), runs an evolutionary search with a CPU-latency front, exports
the most accurate subnet under a latency budget, and prints a summary. Every stage is the same
``nas`` subcommand a user would run (printed before it runs), and every stage resumes: a demo
interrupted and started again continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

from nas.errors import NASError

HELP = "run the whole pipeline (train, profile, search, export) on the embedded data"
ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="checkpoints/demo", help="folder for every output (default %(default)s)")
    parser.add_argument("--space", default=str(ROOT / "search_spaces" / "demo.yaml"))
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "demo.yaml"))
    parser.add_argument("--budget", type=int, default=100, help="search queries (default %(default)s)")
    parser.add_argument("--latency-budget", type=float, default=None, metavar="MS",
                        help="latency budget of the exported subnet in ms (default: half the "
                             "latency of the slowest subnet on the front, or the fastest's if "
                             "that is more)")
    parser.add_argument("--seed", type=int, default=0)


def _stage(title: str, argv: list[str]) -> None:
    from nas.cli import main
    print(f"\n== {title}\n$ nas {shlex.join(argv)}", flush=True)
    code = main(argv)
    if code != 0:
        raise NASError(f"the demo stopped at '{title}' (exit code {code}); fix the error above and "
                       f"run the demo again: finished stages are not redone")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = Path(args.out)
    run_dir, profile = out / "supernet", out / "latency_cpu.json"
    search_dir, export_dir = out / "search", out / "export"
    ckpt = run_dir / "best.pt"

    train = ["train", "--space", args.space, "--data", "fashion-mnist-small", "--config", args.recipe,
             "--out", str(run_dir), "--seed", str(args.seed)]
    # A finished run resumes to its end at once; an interrupted one continues.
    _stage("1/4 train the supernet", train + (["--resume"] if (run_dir / "last.pt").exists() else []))
    if profile.exists():
        print(f"\n== 2/4 profile: {profile} exists (delete it to profile again)")
    else:
        _stage("2/4 profile this CPU (latency lookup table)",
               ["profile", "--checkpoint", str(ckpt), "--device", "cpu", "--batch-size", "1",
                "--threads", "1", "--out", str(profile)])  # one thread: steadiest on shared CPUs
    _stage("3/4 search (evolution, CPU-latency front)",
           ["search", "--space", args.space, "--checkpoint", str(ckpt), "--searcher", "evolution",
            "--budget", str(args.budget), "--seed", str(args.seed), "--out", str(search_dir),
            "--latency", str(profile)])
    front_path = search_dir / "pareto_cpu.json"
    front = json.loads(front_path.read_text())["front"]
    latencies = [row["latency_ms.cpu"] for row in front]
    # Half the slowest front member's latency, but never below the fastest one's: always feasible.
    budget = args.latency_budget or max(min(latencies), 0.5 * max(latencies))
    _stage(f"4/4 export the most accurate subnet under {budget:.3g} ms",
           ["export", "--checkpoint", str(ckpt), "--front", str(front_path), "--pick",
            f"most-accurate:latency<={budget!r}", "--out", str(export_dir), "--force"])
    _summary(front, export_dir, search_dir, time.perf_counter() - start)
    return 0


def _summary(front: list[dict], export_dir: Path, search_dir: Path, seconds: float) -> None:
    from nas.export import load_metadata
    metadata = load_metadata(export_dir)
    m = metadata["metrics"]
    print(f"\n== summary ({seconds / 60:.1f} min)\nCPU Pareto front ({len(front)} subnets):")
    print(f"  {'val top-1':>9s}  {'latency':>9s}  {'params':>8s}  arch")
    for row in sorted(front, key=lambda r: r["latency_ms.cpu"]):
        mark = "*" if row["arch"] == metadata["arch"] else " "
        print(f"{mark} {100 * row['top1']:8.2f}%  {row['latency_ms.cpu']:7.3f}ms  "
              f"{row.get('params', float('nan')) / 1e3:7.1f}k  {row['arch']}")
    files = "\n".join(f"    {export_dir / f}" for f in ("state_dict.pt", "model.pt2", "model.onnx"))
    print(f"\nchosen subnet (*): test top-1 {100 * m['test_top1']:.2f}%, val top-1 {100 * m['val_top1']:.2f}%, "
          f"CPU latency {m.get('latency_ms.cpu', float('nan')):.3f} ms (batch 1), "
          f"{m['params'] / 1e3:.1f}k params, {m['flops'] / 1e6:.2f} MFLOPs\n"
          f"  front plot: {search_dir / 'pareto_cpu.png'}\n  exported model:\n{files}\n"
          f"  load it with: nas.load_subnet({str(export_dir)!r})")
