"""``nas finetune DIR``: fine-tune an exported subnet with distillation from the supernet."""
from __future__ import annotations

import argparse

from nas.errors import ConfigError
from nas.finetune import FinetuneConfig, finetune_export

HELP = "fine-tune an exported subnet (distillation from the supernet's largest subnet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("export_dir", metavar="DIR", help="a folder written by nas export")
    parser.add_argument("--epochs", type=int, default=FinetuneConfig.epochs)
    parser.add_argument("--lr", type=float, default=FinetuneConfig.lr)
    parser.add_argument("--batch-size", type=int, default=FinetuneConfig.batch_size)
    parser.add_argument("--seed", type=int, default=FinetuneConfig.seed)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", help="the supernet checkpoint (default: the one in metadata.json)")
    parser.add_argument("--data-root", help="where the checkpoint's data set lives")


def run(args: argparse.Namespace) -> int:
    try:
        config = FinetuneConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                seed=args.seed, device=args.device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    result = finetune_export(args.export_dir, config, checkpoint=args.checkpoint, data_root=args.data_root)
    b, a = result["before"], result["after"]
    print(f"test top-1 {100 * b['test_top1']:.2f}% -> {100 * a['test_top1']:.2f}%  "
          f"(val {100 * b['val_top1']:.2f}% -> {100 * a['val_top1']:.2f}%) after {config.epochs} epoch(s); "
          f"{args.export_dir} rewritten")
    return 0
