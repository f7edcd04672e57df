"""``nas eval``: score one architecture of a trained supernet.

    nas eval --checkpoint checkpoints/demo/supernet/best.pt --arch ARCH \\
        [--latency PROFILE.json | measured:cpu | table:CSV:COLUMN | flops ...] [--device cpu]

Prints validation top-1 (BatchNorm recalibrated on training images, inherited weights), loss,
parameters, FLOPs and the latency on each ``--latency`` device as a small table (or, with
``--json``, the Candidate record). Results go through the evaluator's cache (``--cache``).
"""
from __future__ import annotations

import argparse
import json

import torch

from nas.candidate import FLOPS, LOSS, PARAMS, TOP1, Candidate, latency_key
from nas.checkpoint import load_checkpoint
from nas.evaluate import DEFAULT_CALIB_IMAGES, SupernetEvaluator
from nas.latency import LatencyModel, make_latency_model, resolve_device
from nas.space import SearchSpace

HELP = "score one arch of a trained supernet: top-1, latency per device, params, FLOPs"
_KIND_NOTE = {"measured": "measured", "lut": "lookup table", "table": "per-arch table",
              "flops": "FLOPs proxy, not a latency"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="supernet checkpoint")
    parser.add_argument("--arch", required=True, metavar="ARCH",
                        help="arch string of the checkpoint's space (quote it: it holds '|')")
    parser.add_argument("--latency", action="append", default=[], metavar="SPEC",
                        help="a latency model, repeatable: a profile JSON (nas profile), "
                             "measured:DEVICE, table:CSV:COLUMN or flops")
    parser.add_argument("--device", default="auto",
                        help="where the subnet is scored: auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--calib-images", type=int, metavar="N",
                        help=f"training images for BatchNorm recalibration (default "
                             f"{DEFAULT_CALIB_IMAGES}, or all if fewer)")
    parser.add_argument("--num-val-images", type=int, metavar="N",
                        help="score on the first N validation images only (default: all)")
    parser.add_argument("--batch-size", type=int, default=500, help="images per forward pass")
    parser.add_argument("--latency-batch-size", type=int, default=1, metavar="B",
                        help="batch size of measured:DEVICE and flops latencies (default 1)")
    parser.add_argument("--threads", type=int, metavar="T", help="threads of measured:cpu")
    parser.add_argument("--cache", metavar="JSONL", help="evaluation cache file to reuse/extend")
    parser.add_argument("--data-root", metavar="DIR", help="where downloaded data sets live")
    parser.add_argument("--json", action="store_true", help="print the Candidate as JSON")


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA if available, else CPU) or a device name checked by resolve_device.

    Raises:
        ConfigError: an unknown or unavailable device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve_device(name)


def run(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    ckpt = load_checkpoint(args.checkpoint)
    space = SearchSpace.from_config(ckpt["space"], source=f"{args.checkpoint}: space")
    arch = space.parse(args.arch)  # fails fast, before any data is loaded
    model = ckpt["model"]
    latency = [make_latency_model(spec, space, in_channels=model["in_channels"],
                                  num_classes=model["num_classes"],
                                  batch_size=args.latency_batch_size, threads=args.threads)
               for spec in args.latency]
    evaluator = SupernetEvaluator.from_checkpoint(
        args.checkpoint, checkpoint=ckpt, device=device, calib_images=args.calib_images,
        batch_size=args.batch_size, cache_path=args.cache, data_root=args.data_root,
        latency_models=latency)
    candidate = evaluator(arch, args.num_val_images)
    if args.json:
        print(json.dumps(candidate.to_json()))
    else:
        print(format_table(candidate, evaluator, latency, args.num_val_images))
    return 0


def format_table(candidate: Candidate, evaluator: SupernetEvaluator,
                 latency: list[LatencyModel], num_val_images: int | None) -> str:
    """The metrics of one candidate as an aligned two-column table with notes."""
    m = candidate.metrics
    num_val = min(num_val_images or evaluator.num_val_images, evaluator.num_val_images)
    rows = [
        (TOP1, f"{m[TOP1] * 100:.2f} %", f"validation, {num_val} images; BN recalibrated on "
                                         f"{evaluator.num_calib_images} training images"),
        (LOSS, f"{m[LOSS]:.4f}", "validation cross-entropy"),
        (PARAMS, f"{m[PARAMS] / 1e6:.4f} M", f"{int(m[PARAMS]):,} parameters"),
        (FLOPS, f"{m[FLOPS] / 1e6:.2f} M", "per image, 2 x multiply-accumulates"),
    ]
    for model in latency:
        note = _KIND_NOTE.get(model.kind, model.kind)
        batch = getattr(model, "batch_size", None)
        rows.append((latency_key(model.device), f"{m[latency_key(model.device)]:.3f} ms",
                     f"{note}, batch {batch}" if batch else note))
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    lines = [f"arch  {candidate.arch}"]
    lines += [f"{name:<{width}}  {value:>{value_width}}  {note}" for name, value, note in rows]
    return "\n".join(lines)
