"""``nas train``: train a once-for-all supernet and write a run directory.

    nas train --space search_spaces/demo.yaml --data fashion-mnist-small --out checkpoints/demo/supernet \\
        [--config recipes/demo.yaml] [--epochs N] [--strategy sandwich] [--seed S] \\
        [--set key=value ...] [--device cpu|cuda] [--resume]
    torchrun --nproc_per_node=4 scripts/train_supernet.py ...   # data-parallel, same flags

The config is resolved as defaults < recipe (``--config``) < explicit flags < ``--set``; every
layer is validated strictly against :class:`nas.training.TrainConfig`. ``--resume`` continues the
run in ``--out`` from its ``last.pt`` with the config recorded there.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nas.config import from_mapping, load_yaml_mapping, parse_overrides
from nas.data import DATASET_NAMES, TensorData, load_dataset, train_val_split
from nas.errors import ConfigError
from nas.space import SearchSpace
from nas.training import STRATEGIES, TrainConfig, train_supernet
from nas.training.config import DEVICES
from nas.training.state import (LAST, check_run_dir, data_meta, load_resume_checkpoint,
                                resumed_config)

HELP = "train a once-for-all supernet (data-parallel under torchrun)"
DEFAULT_DATA = "fashion-mnist-small"
FLAG_KEYS = ("epochs", "strategy", "seed", "device")  # flags that are config keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", metavar="PATH",
                        help="search-space YAML (with --resume: the checkpoint's if omitted)")
    parser.add_argument("--data", metavar="NAME",
                        help=f"data set, one of {', '.join(DATASET_NAMES)} (default "
                             f"{DEFAULT_DATA}; with --resume: the checkpoint's)")
    parser.add_argument("--data-root", metavar="DIR", help="where downloaded data sets live")
    parser.add_argument("--download", action="store_true",
                        help="download a missing data set (needs internet)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="run directory: config.yaml, last.pt, best.pt, metrics.jsonl")
    parser.add_argument("--config", metavar="RECIPE", help="recipe YAML of TrainConfig keys")
    parser.add_argument("--epochs", type=int, metavar="N", help="passes over the training split")
    parser.add_argument("--strategy", choices=list(STRATEGIES), help="subnet sampling strategy")
    parser.add_argument("--seed", type=int, metavar="S", help="seed of everything random")
    parser.add_argument("--device", choices=DEVICES, help="where to train (default auto)")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                        metavar="KEY=VALUE",
                        help=f"any config key: {', '.join(TrainConfig.keys())}")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last.pt")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    check_run_dir(out, resume=args.resume)
    given = explicit_config(args)
    space = SearchSpace.from_yaml(args.space) if args.space else None
    ckpt = None
    if args.resume:
        ckpt = load_resume_checkpoint(out, space)
        config = resumed_config(ckpt["config"], given, str(out / LAST))
        space = space or SearchSpace.from_config(ckpt["space"], source=f"{out / LAST}: space")
        name = ckpt["data"]["name"]
        if args.data and args.data != name:
            raise ConfigError(f"--resume: --data {args.data} differs from the run's data set "
                              f"{name}")
        expected_split = ckpt["data"]["split"]["val_indices_sha256"]
    else:
        if space is None:
            raise ConfigError("--space PATH is required (a search-space YAML, e.g. "
                              "search_spaces/demo.yaml)")
        config = from_mapping(TrainConfig, given, source="train config")
        name, expected_split = args.data or DEFAULT_DATA, None
    train, val, meta = load_run_data(name, config, root=args.data_root, download=args.download,
                                     expected_sha256=expected_split)
    result = train_supernet(config, space, train, val, out, data_meta=meta, resume_from=ckpt)
    if result.top1_largest is not None:
        print(f"validation top-1 ({len(val)} images, BN recalibrated on "
              f"{min(config.calib_images, len(train))} training images): largest subnet "
              f"{result.top1_largest:.2%}, smallest subnet {result.top1_smallest:.2%}; best "
              f"largest {result.best_top1:.2%} in {out / 'best.pt'}")
    return 0


def explicit_config(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys given in this invocation: recipe < flags < ``--set``, each layer
    checked on its own so that an error names where the bad key came from.

    Raises:
        ConfigError: an unknown key or a bad value (naming the recipe file, flag or ``--set``).
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    if args.config:
        layers.append((args.config, load_yaml_mapping(args.config)))
    layers.append(("flags", {k: getattr(args, k) for k in FLAG_KEYS
                             if getattr(args, k) is not None}))
    layers.append(("--set", parse_overrides(args.overrides)))
    merged: dict[str, Any] = {}
    for source, mapping in layers:
        from_mapping(TrainConfig, mapping, source=source)
        merged.update(mapping)
    return merged


def load_run_data(name: str, config: TrainConfig, *, root: str | None, download: bool,
                  expected_sha256: str | None) -> tuple[TensorData, TensorData, dict[str, Any]]:
    """Loads a data set's training split and holds out the validation images.

    Returns:
        ``(train, val, data_meta)``; ``train`` is cut to ``config.train_subset`` images if set.

    Raises:
        DataError: missing data, or a split that differs from ``expected_sha256`` (resume).
        ConfigError: a data set that does not fit in memory (``imagefolder:``), or a bad
            ``val_size``.
    """
    data = load_dataset(name, "train", root=root, download=download)
    if not isinstance(data, TensorData):
        raise ConfigError(f"{name}: nas train needs an in-memory data set (the names "
                          f"{', '.join(n for n in DATASET_NAMES if ':' not in n)}); image "
                          f"folders are not supported yet")
    train, val, split = train_val_split(data, config.val_size, config.seed,
                                        expected_sha256=expected_sha256)
    if config.train_subset:
        train = train.subset(range(min(config.train_subset, len(train))))
    return train, val, data_meta(data.info, split, config.train_subset)
