"""``nas profile``: build a device's latency lookup table (a profile) on this machine.

    nas profile --space search_spaces/demo.yaml --device cpu --out checkpoints/latency/cpu.json \\
        [--batch-size B] [--threads T] [--calibrate K] [--validate N] [--name LABEL]
    nas profile --space search_spaces/demo.yaml --export-layers layers.json [--validate N]

The first form times every layer configuration of the space on ``--device`` (a progress bar),
fits the table's constants on ``--calibrate`` whole networks, and with ``--validate N`` measures N
other random networks and prints the table's error (MAPE, share within +-10 %, Kendall tau). The
second writes the layer list for ``scripts/profile_device.py``, which builds the same profile on
a target that has only torch. ``--checkpoint CKPT`` takes the space and the model's input
channels and classes from a supernet checkpoint instead of ``--space``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nas.checkpoint import atomic_write_text, load_checkpoint
from nas.errors import ConfigError
from nas.latency import build_profile, export_layer_list, resolve_device
from nas.latency.lut import profile_archs
from nas.latency.target import CLOCKS, STATISTICS, summary
from nas.space import SearchSpace

HELP = "build a device latency lookup table (profile), or export its layer list"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--space", metavar="PATH", help="search-space YAML")
    source.add_argument("--checkpoint", metavar="CKPT",
                        help="take the space, input channels and classes from a checkpoint")
    parser.add_argument("--out", metavar="PROFILE", help="profile JSON to write, e.g. "
                        "checkpoints/latency/cpu.json")
    parser.add_argument("--export-layers", metavar="FILE",
                        help="write the layer list for scripts/profile_device.py (no timing)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    parser.add_argument("--batch-size", type=int, default=1, metavar="B")
    parser.add_argument("--threads", type=int, metavar="T", help="torch intra-op threads")
    parser.add_argument("--calibrate", type=int, default=20, metavar="K",
                        help="whole networks timed to fit the constants (default 20)")
    parser.add_argument("--validate", type=int, default=0, metavar="N",
                        help="also time N other random networks and report the table's error")
    parser.add_argument("--name", metavar="LABEL",
                        help="device label, metric latency_ms.LABEL (default: cpu, cuda_b64...)")
    parser.add_argument("--in-channels", type=int, default=3, help="with --space (default 3)")
    parser.add_argument("--num-classes", type=int, default=10, help="with --space (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the network choice")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-time-ms", type=float, default=5.0,
                        help="each timing runs a module back to back for at least this long")
    parser.add_argument("--statistic", choices=list(STATISTICS), default="median",
                        help="over the timing rounds (min: for a CPU shared with other work)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall time, or this thread's CPU time (cpu and --threads 1 only: "
                             "immune to other processes on a shared CPU)")


def run(args: argparse.Namespace) -> int:
    if not args.out and not args.export_layers:
        raise ConfigError("give --out PROFILE.json (build the table here) and/or "
                          "--export-layers FILE (for scripts/profile_device.py)")
    for flag in ("batch_size", "calibrate", "repeats"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.validate < 0:
        raise ConfigError(f"--validate must be >= 0, got {args.validate}")
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        space = SearchSpace.from_config(ckpt["space"], source=f"{args.checkpoint}: space")
        model = {"in_channels": ckpt["model"]["in_channels"],
                 "num_classes": ckpt["model"]["num_classes"]}
    else:
        space = SearchSpace.from_yaml(args.space)
        model = {"in_channels": args.in_channels, "num_classes": args.num_classes}
    if args.export_layers:
        calib, valid = profile_archs(space, args.calibrate, args.validate, args.seed)
        layer_list = export_layer_list(space, calibrate=calib, validate=valid, **model)
        atomic_write_text(args.export_layers, json.dumps(layer_list) + "\n")
        print(f"wrote {args.export_layers}: {len(layer_list['layers'])} layer configurations, "
              f"{len(calib)} calibration and {len(valid)} validation networks; on the target run "
              f"`python profile_device.py {Path(args.export_layers).name} --device DEVICE --out "
              f"PROFILE.json`")
    if args.out:
        resolve_device(args.device)
        profile = _build_with_progress(space, model, args)
        atomic_write_text(args.out, json.dumps(profile, indent=1) + "\n")
        print(summary(profile))
        print(f"wrote {args.out}")
    return 0


def _build_with_progress(space: SearchSpace, model: dict, args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    bar = None

    def progress(done: int, total: int, stage: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="timing", desc="profiling")
        bar.set_postfix_str(stage, refresh=False)
        bar.update(done - bar.n)

    try:
        return build_profile(
            space, device=args.device, batch_size=args.batch_size, threads=args.threads,
            calibrate=args.calibrate, validate=args.validate, seed=args.seed, name=args.name,
            warmup=args.warmup, repeats=args.repeats, min_time_ms=args.min_time_ms,
            statistic=args.statistic, clock=args.clock, progress=progress, **model)
    finally:
        if bar is not None:
            bar.close()
