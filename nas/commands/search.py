"""``nas search``: search a supernet (or a benchmark table) for the best archs per device.

    nas search --space search_spaces/nb201.yaml --table nb201.csv.gz \\
        --accuracy-column c10_val_12ep --latency-column lat_ms_raspi4 \\
        --searcher evolution --budget 200 --seed 0 --out runs/nb201_raspi4
    nas search --checkpoint checkpoints/demo/supernet/best.pt --latency flops --latency measured:cpu \\
        --constraint latency:cpu<=2ms --budget 100 --out runs/demo_cpu

Writes ``DIR/history.jsonl`` (every evaluation), ``DIR/pareto_<device>.{json,csv,png}``,
``DIR/search_log.jsonl`` (hypervolume per generation), ``DIR/summary.json`` and the resolved
``DIR/config.yaml``; shows a progress bar and prints a summary table. Rerunning the same command
resumes a killed search; other arguments into the same DIR are refused. Under ``torchrun`` a
supernet search evaluates each generation across the ranks (rank 0 writes).
"""
from __future__ import annotations

import argparse
import os

from nas.config import from_mapping, parse_overrides
from nas.errors import ConfigError
from nas.search.config import SEARCHERS, SearchConfig

HELP = "search a supernet (or a benchmark table) for Pareto-optimal archs per device"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("where metrics come from (one of)")
    src.add_argument("--checkpoint", metavar="CKPT", help="supernet checkpoint (e.g. RUN/best.pt)")
    src.add_argument("--table", metavar="CSV",
                     help="per-arch table (.csv or .csv.gz, joined on its 'arch' column)")
    parser.add_argument("--space", metavar="YAML",
                        help="search-space file (required with --table; default: the checkpoint's)")
    parser.add_argument("--accuracy-column", metavar="COL",
                        help="table column read as top-1 (percent columns, max > 1, are divided "
                             "by 100)")
    parser.add_argument("--latency-column", action="append", default=[], metavar="COL",
                        help="table column of latencies in ms, repeatable; lat_ms_DEV -> device DEV")
    parser.add_argument("--latency", action="append", default=[], metavar="SPEC",
                        help="latency model, repeatable: PROFILE.json, measured:DEVICE, "
                             "table:CSV:COLUMN or flops (optionally @LABEL)")
    parser.add_argument("--objective", action="append", default=[], metavar="OBJ",
                        help="repeatable: top1, params, flops, loss, latency:DEVICE (default: top1 "
                             "and every unconstrained device's latency)")
    parser.add_argument("--constraint", action="append", default=[], metavar="EXPR",
                        help="repeatable: e.g. 'latency:cpu<=5ms', 'params<=1e6', 'top1>=0.8'")
    parser.add_argument("--searcher", default="evolution",
                        help=f"one of {', '.join(SEARCHERS)} (default evolution: regularized "
                             "evolution for one objective, NSGA-II for several)")
    parser.add_argument("--budget", type=int, default=100, metavar="N", help="archs to evaluate")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="searcher seed")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--no-surrogate", action="store_true",
                        help="do not rank proposals with the online surrogate model")
    parser.add_argument("--device", default="cpu", help="where a supernet scores subnets: cpu, cuda")
    parser.add_argument("--calib-images", type=int, metavar="N",
                        help="training images for BatchNorm recalibration")
    parser.add_argument("--halving", type=int, metavar="ETA",
                        help="successive halving: keep the best 1/ETA per rung (default 3 with "
                             "a checkpoint; 0 turns it off)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="searcher option, repeatable: population, sample, initial, "
                             "batch_size, offspring, crossover_prob, candidates_per_child, "
                             "optimism, ehvi_share, reference_quantile, floor_quantile, "
                             "infeasible_patience, halving_rungs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The :class:`SearchConfig` of the command line (``--set`` applied last).

    Raises:
        ConfigError: an unknown searcher or option, a bad value.
    """
    if args.searcher not in SEARCHERS:
        raise ConfigError(f"unknown searcher {args.searcher!r}; choose one of {', '.join(SEARCHERS)}")
    mapping = {
        "space": args.space, "checkpoint": args.checkpoint, "table": args.table,
        "accuracy_column": args.accuracy_column, "latency_columns": args.latency_column,
        "latency": args.latency, "objectives": args.objective, "constraints": args.constraint,
        "searcher": args.searcher, "budget": args.budget, "seed": args.seed,
        "surrogate": not args.no_surrogate, "device": args.device,
        "calib_images": args.calib_images, "halving_eta": args.halving,
    }
    mapping = {k: v for k, v in mapping.items() if v is not None}
    overrides = parse_overrides(args.set)
    for key in ("space", "checkpoint", "table", "searcher", "budget", "seed"):
        if key in overrides:
            raise ConfigError(f"--set {key}=...: use the --{key} flag")
    mapping.update(overrides)
    config = from_mapping(SearchConfig, mapping, source="nas search")
    # Fail on a bad constraint or objective before any data is loaded.
    from nas.search.objectives import parse_constraint, parse_objective

    for text in config.constraints:
        parse_constraint(text)
    for text in config.objectives:
        parse_objective(text)
    return config


def _init_distributed(config: SearchConfig) -> bool:
    """Joins the torchrun process group (nccl for a supernet on CUDA, else gloo): a supernet
    search shards each batch over the ranks; every search writes its files from rank 0 only."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    cuda = config.checkpoint is not None and config.device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def run(args: argparse.Namespace) -> int:
    from nas.search.runner import run_search, summary_text

    config = config_from_args(args)
    started = _init_distributed(config)
    try:
        result = run_search(config, out=args.out, progress=not args.quiet)
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(summary_text(result))
        print(f"results in {args.out}")
    return 0
