"""Export a chosen subnet as a model that runs without the supernet.

:func:`export_subnet` extracts the subnet from a supernet checkpoint, recalibrates its BatchNorm
statistics on training images, measures validation and test top-1 (this is the only place the
test split is used), and writes an export folder:

- ``state_dict.pt``: the subnet's weights; ``metadata.json``: arch string, search space, input
  size, normalization, class names, metrics, the checkpoint it came from;
- ``model.pt2``: a ``torch.export`` ExportedProgram (the format ExecuTorch and AOTInductor take);
- ``model.onnx``: ONNX (opset 18) through torch's dynamo exporter.

Both program formats have a dynamic batch dimension and are verified at export time against the
PyTorch subnet on real images (ONNX through onnxruntime), max abs difference <= 1e-4.
The folder is written next to its destination and renamed into place, so a failed export leaves
nothing half-written. :func:`load_subnet` rebuilds the plain module from the folder alone.

This module does not search or pick; see :mod:`nas.pick` for choosing from a front.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from nas import checkpoint as ckpt_io
from nas.data import Batches, TensorData, load_dataset, load_train_val
from nas.errors import CheckpointError, ConfigError, NASError
from nas.evaluate import accuracy, calibrate_bn
from nas.space import Arch, SearchSpace
from nas.supernet import build_subnet

FORMATS = ("torch", "pt2", "onnx")
METADATA_VERSION = 1
ONNX_OPSET = 18


class ExportError(NASError):
    """An exported program does not reproduce the PyTorch subnet, or an export folder is bad."""


@dataclass(frozen=True)
class ExportConfig:
    """Settings of :func:`export_subnet`.

    Attributes:
        formats: any of ``torch`` (state dict + metadata, always written), ``pt2``, ``onnx``.
        calib_images: training images for BN recalibration (the first of a fixed seeded order).
        batch_size: evaluation batch size.
        tolerance: largest allowed abs difference between a program format and PyTorch.
        device: where recalibration and evaluation run.
    """

    formats: tuple[str, ...] = FORMATS
    calib_images: int = 2000
    batch_size: int = 256
    tolerance: float = 1e-4
    device: str = "cpu"

    def __post_init__(self):
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ValueError(f"formats: unknown {', '.join(unknown) or '(empty)'}; "
                             f"choose from {', '.join(FORMATS)}")
        if self.calib_images < 1 or self.batch_size < 1:
            raise ValueError("calib_images and batch_size must be >= 1")


def calibration_batches(train: TensorData, num_images: int, batch_size: int, seed: int = 0) -> list:
    """A fixed, seeded set of un-augmented training batches for BN recalibration."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:num_images]
    return list(Batches(train.subset(order), batch_size))


def export_subnet(checkpoint: str | Path, arch: Arch | str, out_dir: str | Path, *,
                  config: ExportConfig = ExportConfig(), data_root: str | None = None,
                  extra_metrics: dict[str, float] | None = None, force: bool = False) -> dict[str, Any]:
    """Exports the subnet ``arch`` of a supernet checkpoint (see the module docstring).

    Args:
        checkpoint: path of a supernet checkpoint (``best.pt``).
        arch: the architecture, or its canonical string.
        out_dir: the export folder to create.
        config: formats, calibration and verification settings.
        data_root: where the checkpoint's data set lives, if not the default.
        extra_metrics: metrics to record as well (e.g. latency per device from the search).
        force: replace an existing ``out_dir``.

    Returns:
        The metadata written to ``metadata.json``.

    Raises:
        CheckpointError, ArchError, DataError, ExportError: with a message naming the problem.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise ConfigError(f"{out_dir}: already exists; choose another --out or pass --force")
    ckpt = ckpt_io.load_checkpoint(checkpoint, map_location=config.device)
    supernet = ckpt_io.supernet_from_checkpoint(ckpt).to(config.device)
    space = supernet.space
    arch = space.parse(arch) if isinstance(arch, str) else arch
    space.check(arch)
    subnet = supernet.extract(arch).to(config.device)
    del supernet

    record = ckpt["data"]
    train, val = load_train_val(record["split"], root=data_root)
    test = load_dataset(record["split"]["dataset"], "test", root=data_root)
    train, val, test = (d.to(config.device) for d in (train, val, test))
    calibrate_bn(subnet, calibration_batches(train, config.calib_images, config.batch_size))
    val_top1, _ = accuracy(subnet, Batches(val, config.batch_size, resolution=arch.resolution))
    test_top1, _ = accuracy(subnet, Batches(test, config.batch_size, resolution=arch.resolution))
    subnet = subnet.cpu().eval()

    info = record["info"]
    metadata = {
        "format": "ofa-nas-subnet", "version": METADATA_VERSION,
        "arch": str(arch), "space": space.to_config(),
        "input_size": [info["in_channels"], arch.resolution, arch.resolution],
        "num_classes": info["num_classes"], "normalization": {"mean": list(info["mean"]), "std": list(info["std"])},
        "class_names": list(info["class_names"]), "dataset": record["split"]["dataset"],
        "metrics": {"val_top1": val_top1, "test_top1": test_top1,
                    "params": space.params(arch, in_channels=info["in_channels"], num_classes=info["num_classes"]),
                    "flops": space.flops(arch, in_channels=info["in_channels"], num_classes=info["num_classes"]),
                    **(extra_metrics or {})},
        "checkpoint": {"path": str(checkpoint), "fingerprint": ckpt_io.fingerprint(checkpoint),
                       "step": ckpt.get("step")},
        "formats": ["torch", *[f for f in config.formats if f != "torch"]],
        "torch_version": torch.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    sample = next(iter(Batches(test.to("cpu"), 16, resolution=arch.resolution)))[0]
    write_export_folder(subnet, metadata, out_dir, sample, config.tolerance, force=force)
    return metadata


def write_export_folder(subnet: nn.Module, metadata: dict[str, Any], out_dir: Path,
                        sample: torch.Tensor, tolerance: float, *, force: bool = False) -> None:
    """Writes weights, metadata and the program formats into a temporary folder beside
    ``out_dir``, verifies each program against ``subnet`` on ``sample``, then renames it into
    place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        torch.save(subnet.state_dict(), tmp / "state_dict.pt")
        if "pt2" in metadata["formats"]:
            metadata.setdefault("verification", {})["pt2_max_abs_diff"] = _export_pt2(
                subnet, sample, tmp / "model.pt2", tolerance)
        if "onnx" in metadata["formats"]:
            metadata.setdefault("verification", {})["onnx_max_abs_diff"] = _export_onnx(
                subnet, sample, tmp / "model.onnx", tolerance)
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        if out_dir.exists() and force:
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _batch_dim() -> torch.export.Dim:
    return torch.export.Dim("batch", min=1, max=65536)


def _check_close(name: str, got: torch.Tensor, want: torch.Tensor, tolerance: float) -> float:
    diff = float((got - want).abs().max())
    if not diff <= tolerance:
        raise ExportError(f"{name} differs from the PyTorch subnet by {diff:.3g} (> {tolerance:g})")
    return diff


def _export_pt2(subnet: nn.Module, sample: torch.Tensor, path: Path, tolerance: float) -> float:
    program = torch.export.export(subnet, (sample,), dynamic_shapes=({0: _batch_dim()},))
    torch.export.save(program, path)
    reloaded = torch.export.load(path).module()
    with torch.no_grad():  # a batch size other than the traced one proves the dynamic dimension
        x = torch.cat([sample, sample[:3]])
        return _check_close("model.pt2", reloaded(x), subnet(x), tolerance)


def _export_onnx(subnet: nn.Module, sample: torch.Tensor, path: Path, tolerance: float) -> float:
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("ONNX export needs the optional extra: pip install 'ofa-nas[onnx]' "
                          "(or leave onnx out of --formats)") from None
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates every pass
        torch.onnx.export(subnet, (sample,), str(path), dynamo=True, opset_version=ONNX_OPSET,
                          input_names=["images"], output_names=["logits"],
                          dynamic_shapes=({0: _batch_dim()},), external_data=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.cat([sample, sample[:3]])
    (logits,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        return _check_close("model.onnx", torch.from_numpy(logits), subnet(x), tolerance)


def load_metadata(export_dir: str | Path) -> dict[str, Any]:
    """Reads ``metadata.json`` of an export folder.

    Raises:
        CheckpointError: missing folder or file, or not an export of this framework.
    """
    path = Path(export_dir) / "metadata.json"
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found; is {export_dir} a folder written by nas export?") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != "ofa-nas-subnet":
        raise CheckpointError(f"{path}: not the metadata of an exported subnet")
    if metadata.get("version") != METADATA_VERSION:
        raise CheckpointError(f"{path}: metadata version {metadata.get('version')!r} is not supported "
                              f"(this version reads {METADATA_VERSION})")
    return metadata


def load_subnet(export_dir: str | Path) -> nn.Module:
    """Rebuilds the exported plain ``nn.Module`` (eval mode) from arch + space + weights,
    without building the supernet.

    Raises:
        CheckpointError: the folder is missing, incomplete or of another format.
    """
    metadata = load_metadata(export_dir)
    space = SearchSpace.from_config(metadata["space"], source=f"{export_dir}/metadata.json")
    arch = space.parse(metadata["arch"])
    model = build_subnet(space, arch, in_channels=metadata["input_size"][0],
                         num_classes=metadata["num_classes"])
    weights = Path(export_dir) / "state_dict.pt"
    if not weights.is_file():
        raise CheckpointError(f"{weights}: not found")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # corrupt, truncated, pickle payload, wrong shapes
        raise CheckpointError(f"{weights}: cannot load the weights ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return model.eval()


def parse_formats(text: str) -> tuple[str, ...]:
    """``"torch,pt2"`` -> ``("torch", "pt2")``.

    Raises:
        ConfigError: an unknown format.
    """
    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"--formats {text!r}: unknown {', '.join(unknown) or '(empty)'}; "
                          f"choose from {', '.join(FORMATS)}")
    return formats


def normalize_images(images: Sequence, metadata: dict[str, Any]) -> torch.Tensor:
    """Turns uint8 images (N, C, H, W) into the normalized float input an exported model expects."""
    x = torch.as_tensor(images).float().div(255)
    mean = torch.tensor(metadata["normalization"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(metadata["normalization"]["std"]).view(1, -1, 1, 1)
    return (x - mean) / std
