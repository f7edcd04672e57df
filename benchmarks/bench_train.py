"""Cost of a sandwich training step against training its subnets as plain models.

For several steps of the ``sandwich`` strategy (largest + smallest + ``num_random`` random
subnets, in-place distillation from the largest), times (A) the real training step of
:func:`nas.training.loop.train_step`: zero_grad, every subnet's forward and backward inside the
supernet with distillation, gradient clipping and the SGD update; and (B) the sum, over the same
subnets extracted as plain models (:meth:`Supernet.extract`), of a forward, a cross-entropy and a
backward on the same batch. A and B alternate (A B A B ...) in one run so that machine drift
cancels; the table shows the median of each and their ratio. Target: median ratio <= 1.20.

    python benchmarks/bench_train.py [--space demo] [--steps 4] [--repeats 5] [--batch-size 128]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from nas import SearchSpace
from nas.data import load_dataset, train_val_split
from nas.training import TrainConfig
from nas.training.distributed import World
from nas.training.loop import Run, step_rng, train_step
from nas.training.state import data_meta

from _timing import time_pair  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.20


def _plain_step(subnets, params, x, y) -> None:
    for p in params:
        p.grad = None
    for sub in subnets:
        F.cross_entropy(sub(x), y).backward()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="demo", help="a name in search_spaces/")
    parser.add_argument("--steps", type=int, default=4, help="steps (sets of subnets) timed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-random", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = SearchSpace.from_yaml(ROOT / "search_spaces" / f"{args.space}.yaml")
    data = load_dataset("fashion-mnist-small")
    if max(space.resolution) != data.info.image_size:
        print(f"note: images resized from {data.info.image_size} to {max(space.resolution)}")
    config = TrainConfig(batch_size=args.batch_size, num_random=args.num_random, seed=args.seed,
                         device="cpu", val_size=200, calib_images=16, augment=False)
    train, val, split = train_val_split(data, config.val_size, config.seed)
    run = Run(config, space, train, val, Path(tempfile.mkdtemp()), data_meta(data.info, split, 0),
              World(), torch.device("cpu"))
    print(f"torch {torch.__version__}, {args.threads} threads, space {space.name}, batch "
          f"{args.batch_size}, sandwich with {args.num_random} random, {args.repeats} "
          f"alternating repeats (median)")
    print(f"{'step':>4s} {'subnets_params_M':>24s} {'A_sandwich_ms':>13s} {'B_plain_ms':>10s} "
          f"{'ratio':>6s}")
    ratios, sum_a, sum_b = [], 0.0, 0.0
    for step in range(args.steps):
        archs = run.strategy.sample(space, step_rng(args.seed, step), 0.5)
        x, y = run.shard(0, step)
        subnets = [run.model.extract(a).train() for a in archs]
        plain_params = [p for s in subnets for p in s.parameters()]
        inputs = [x if x.shape[-1] == a.resolution else
                  F.interpolate(x, size=(a.resolution,) * 2, mode="bilinear") for a in archs]
        ta, tb = time_pair(
            lambda: train_step(run, x, y, archs, step=step, lr=0.01),
            lambda: [_plain_step([s], plain_params, xi, y) for s, xi in zip(subnets, inputs)],
            args.repeats)
        params = ",".join(f"{space.params(a, in_channels=data.info.in_channels) / 1e6:.3f}"
                          for a in archs)
        ratios.append(ta / tb)
        sum_a, sum_b = sum_a + ta, sum_b + tb
        print(f"{step:4d} {params:>24s} {ta * 1e3:13.1f} {tb * 1e3:10.1f} {ta / tb:6.3f}",
              flush=True)
    ratio = statistics.median(ratios)
    ok = ratio <= TARGET
    print(f"-> median ratio sandwich step / plain forward+backward: {ratio:.3f} (all steps: "
          f"{sum_a / sum_b:.3f}; target <= {TARGET}): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
