"""Overhead of running a subnet inside the supernet against running it extracted.

For the smallest, the largest and 5 sampled archs of each space, times (A) ``supernet(x, arch)``
and (B) ``supernet.extract(arch)`` for a training step (forward + backward, batch 128) and an
eval-mode forward, alternating A B A B ... in one run so that machine drift cancels, and prints a
table and the median ratios A/B.

Anchor (Once-for-All's dynamic network on this kind of machine): 1.00x for a training step and
1.07-1.09x for a forward pass. Targets: median <= 1.05 (train) and <= 1.08 (forward) on nb201;
<= 1.10 for both on demo.

    python benchmarks/bench_supernet_overhead.py [--spaces demo nb201] [--repeats 7]
"""
from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from nas import SearchSpace, Supernet

from _timing import time_pair  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"nb201": (1.05, 1.08), "demo": (1.10, 1.10)}


def _train_step(model, x, y, params):
    for p in params:
        p.grad = None
    F.cross_entropy(model(x), y).backward()


def bench_space(name: str, repeats: int, batch: int, seed: int) -> list[dict]:
    space = SearchSpace.from_yaml(ROOT / "search_spaces" / f"{name}.yaml")
    in_channels = 1 if name == "demo" else 3
    torch.manual_seed(seed)
    net = Supernet(space, num_classes=10, in_channels=in_channels)
    rng = random.Random(seed)
    archs = [("smallest", space.min_arch()), ("largest", space.max_arch())]
    archs += [(f"sample{i}", space.sample(rng)) for i in range(5)]
    rows = []
    for label, arch in archs:
        sub = net.extract(arch)
        x = torch.randn(batch, in_channels, arch.resolution, arch.resolution)
        y = torch.randint(0, 10, (batch,))
        net.train(), sub.train()
        net_params, sub_params = list(net.parameters()), list(sub.parameters())
        train_a, train_b = time_pair(lambda: _train_step(lambda t: net(t, arch), x, y, net_params),
                                      lambda: _train_step(sub, x, y, sub_params), repeats)
        net.eval(), sub.eval()
        with torch.no_grad():
            fwd_a, fwd_b = time_pair(lambda: net(x, arch), lambda: sub(x), repeats)
        rows.append({"space": name, "arch": label, "params_m": space.params(arch, in_channels=in_channels) / 1e6,
                     "train_super_ms": train_a * 1e3, "train_sub_ms": train_b * 1e3,
                     "train_ratio": train_a / train_b, "fwd_super_ms": fwd_a * 1e3,
                     "fwd_sub_ms": fwd_b * 1e3, "fwd_ratio": fwd_a / fwd_b})
        r = rows[-1]
        print(f"{name:6s} {label:9s} {r['params_m']:7.3f} {r['train_super_ms']:10.1f} {r['train_sub_ms']:10.1f} "
              f"{r['train_ratio']:6.3f} {r['fwd_super_ms']:9.1f} {r['fwd_sub_ms']:9.1f} {r['fwd_ratio']:6.3f}",
              flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", nargs="+", default=["demo", "nb201"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, "
          f"{args.repeats} alternating repeats (median)")
    print(f"{'space':6s} {'arch':9s} {'params_M':>7s} {'train_A_ms':>10s} {'train_B_ms':>10s} {'ratio':>6s} "
          f"{'fwd_A_ms':>9s} {'fwd_B_ms':>9s} {'ratio':>6s}   (A = supernet(x, arch), B = extracted)")
    failed = False
    for name in args.spaces:
        rows = bench_space(name, args.repeats, args.batch_size, args.seed)
        train = statistics.median(r["train_ratio"] for r in rows)
        fwd = statistics.median(r["fwd_ratio"] for r in rows)
        t_train, t_fwd = TARGETS.get(name, (1.10, 1.10))
        ok = train <= t_train and fwd <= t_fwd
        failed |= not ok
        print(f"-> {name}: median ratio train step {train:.3f} (target <= {t_train}), "
              f"forward {fwd:.3f} (target <= {t_fwd}): {'PASS' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
