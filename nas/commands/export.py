"""``nas export``: write the chosen subnet as a standalone model (state dict, .pt2, .onnx)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nas.errors import ConfigError
from nas.export import ExportConfig, export_subnet, parse_formats
from nas.pick import parse_rule, pick

HELP = "export a subnet of a supernet checkpoint as a plain PyTorch / torch.export / ONNX model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="supernet checkpoint (e.g. checkpoints/demo/supernet/best.pt)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", help="the arch string to export")
    which.add_argument("--front", help="a front written by nas search (DIR/pareto_<device>.json)")
    parser.add_argument("--pick", help="with --front: the rule that picks the subnet, e.g. "
                        "'most-accurate:latency<=5ms' or 'fastest:top1>=0.88'")
    parser.add_argument("--out", required=True, help="export folder to create")
    parser.add_argument("--formats", default="torch,pt2,onnx", help="comma list of torch, pt2, onnx")
    parser.add_argument("--calib-images", type=int, default=ExportConfig.calib_images)
    parser.add_argument("--device", default="cpu", help="device for recalibration and evaluation")
    parser.add_argument("--data-root", help="where the checkpoint's data set lives")
    parser.add_argument("--force", action="store_true", help="replace an existing --out folder")


def read_front(path: str | Path) -> tuple[str, list[dict]]:
    """Reads a front file: returns (device, rows) with each row's device latency also under
    the key ``latency``.

    Raises:
        ConfigError: missing or malformed file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: front file not found (nas search writes DIR/pareto_<device>.json)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("front"), list):
        raise ConfigError(f"{path}: not a front written by nas search (expected a 'front' list)")
    devices = [o["metric"].removeprefix("latency_ms.") for o in data.get("objectives", [])
               if isinstance(o, dict) and str(o.get("metric", "")).startswith("latency_ms.")]
    device = data.get("device") or (devices[0] if devices else path.stem.removeprefix("pareto_"))
    rows = []
    for row in data["front"]:
        if not isinstance(row, dict) or "arch" not in row:
            raise ConfigError(f"{path}: every front entry needs an 'arch'")
        latency = row.get(f"latency_ms.{device}")
        rows.append({**row, **({"latency": latency} if latency is not None else {})})
    return device, rows


def run(args: argparse.Namespace) -> int:
    config = ExportConfig(formats=parse_formats(args.formats), calib_images=args.calib_images,
                          device=args.device)
    extra = {}
    if args.front:
        if not args.pick:
            raise ConfigError("--front needs --pick RULE (e.g. 'most-accurate:latency<=5ms')")
        rule = parse_rule(args.pick)
        device, rows = read_front(args.front)
        chosen = pick(rows, rule)
        arch = chosen["arch"]
        extra = {k: v for k, v in chosen.items() if k.startswith("latency_ms.")}
        print(f"picked by {rule} from the {device} front ({len(rows)} candidates): {arch}")
    else:
        if args.pick:
            raise ConfigError("--pick goes with --front, not with --arch")
        arch = args.arch
    metadata = export_subnet(args.checkpoint, arch, args.out, config=config, data_root=args.data_root,
                             extra_metrics=extra, force=args.force)
    m = metadata["metrics"]
    print(f"exported {metadata['arch']}\n  to {args.out} ({', '.join(metadata['formats'])})\n"
          f"  val top-1 {100 * m['val_top1']:.2f}%  test top-1 {100 * m['test_top1']:.2f}%  "
          f"params {m['params'] / 1e6:.3f} M  FLOPs {m['flops'] / 1e6:.1f} M")
    return 0
