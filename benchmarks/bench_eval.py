"""Evaluator throughput: evaluations per minute, and time against plain inference.

For N random archs of a demo checkpoint, times

- the evaluator (``SupernetEvaluator.evaluate``, no cache): extract each subnet, recalibrate its
  BatchNorm on the calibration images, score the validation images, count params and FLOPs;
- plain inference of the same subnets, extracted beforehand, in eval mode under
  ``torch.inference_mode`` over the same images (calibration + validation) in the same batches;

in alternating rounds, and prints the medians and their ratio (target <= 1.25).

    python benchmarks/bench_eval.py [--checkpoint CKPT] [--archs 20] [--threads 2] [--rounds 3]

Without ``--checkpoint`` it saves an untrained demo supernet as a checkpoint (timing does not
depend on the weights). Run it on an otherwise idle machine (see ``other CPU`` in the output).
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench_latency import OtherLoad  # benchmarks/ is on sys.path when run as a script
from nas import SearchSpace, Supernet
from nas.checkpoint import save_checkpoint
from nas.data import Batches, load_dataset, train_val_split
from nas.evaluate import DEFAULT_CALIB_IMAGES, SupernetEvaluator

ROOT = Path(__file__).resolve().parents[1]


def demo_checkpoint(folder: Path) -> Path:
    """An untrained demo supernet saved like a training run (2,000 validation images)."""
    space = SearchSpace.from_yaml(ROOT / "search_spaces" / "demo.yaml")
    torch.manual_seed(0)
    net = Supernet(space, num_classes=10, in_channels=1)
    data = load_dataset("fashion-mnist-small")
    _, _, split = train_val_split(data, 2000, 0)
    info = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(data.info).items()}
    path = folder / "demo_untrained.pt"
    save_checkpoint({"space": space.to_config(), "model": {"num_classes": 10, "in_channels": 1},
                     "state_dict": net.state_dict(), "config": {}, "step": 0,
                     "data": {"name": data.info.name, "info": info, "split": split,
                              "train_subset": 0}}, path)
    return path


def time_evaluator(args, archs) -> float:
    evaluator = SupernetEvaluator.from_checkpoint(args.checkpoint, calib_images=args.calib_images,
                                                  batch_size=args.batch_size)
    start = time.perf_counter()
    evaluator.evaluate(archs)
    return time.perf_counter() - start


def plain_batches(evaluator: SupernetEvaluator, resolution: int) -> list:
    """The evaluator's calibration and validation images in the same batches, as tensors."""
    return [x for data in (evaluator.calib_data, evaluator.val_data)
            for x, _ in Batches(data, evaluator.batch_size, resolution=resolution)]


def time_plain(subnets, batches) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for net, xs in zip(subnets, batches):
            for x in xs:
                net(x)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--calib-images", type=int, default=DEFAULT_CALIB_IMAGES)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint is None:
            args.checkpoint = demo_checkpoint(Path(tmp))
        reference = SupernetEvaluator.from_checkpoint(args.checkpoint, calib_images=args.calib_images,
                                                      batch_size=args.batch_size)
        rng = random.Random(args.seed)
        archs = list(dict.fromkeys(reference.space.sample(rng) for _ in range(args.archs)))
        subnets = [reference.supernet.extract(a).eval() for a in archs]
        by_resolution = {r: plain_batches(reference, r) for r in {a.resolution for a in archs}}
        batches = [by_resolution[a.resolution] for a in archs]
        images = reference.num_calib_images + reference.num_val_images
        time_plain(subnets[:2], batches[:2])  # warm-up: allocator, oneDNN kernels
        time_evaluator(args, archs[:2])
        evaluator_s, plain_s = [], []
        with OtherLoad() as load:
            for _ in range(args.rounds):  # alternate, so that a load change hits both alike
                evaluator_s.append(time_evaluator(args, archs))
                plain_s.append(time_plain(subnets, batches))
    ev, plain = statistics.median(evaluator_s), statistics.median(plain_s)
    print(f"checkpoint {args.checkpoint.name}: {len(archs)} archs x {images} images "
          f"({reference.num_calib_images} calibration + {reference.num_val_images} validation), "
          f"batch {args.batch_size}, {args.threads} threads, median of {args.rounds} rounds")
    print(f"{'':28}{'seconds':>9}{'evals/min':>11}")
    print(f"{'evaluator (no cache)':28}{ev:9.2f}{len(archs) / ev * 60:11.1f}")
    print(f"{'plain inference, same nets':28}{plain:9.2f}{len(archs) / plain * 60:11.1f}")
    print(f"ratio evaluator / plain inference: {ev / plain:.3f} (target <= 1.25); other CPU "
          f"(other processes' share of the machine during the rounds): {load.value * 100:.0f}%")


if __name__ == "__main__":
    main()
