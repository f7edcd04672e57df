"""Fine-tune an exported subnet, distilling from the supernet's largest subnet.

:func:`finetune_export` loads an export folder (see :mod:`nas.export`), trains the subnet for a
few epochs on the training split of its checkpoint with in-place-distillation's loss (the teacher
is the supernet's largest subnet, BN recalibrated), recalibrates BN, measures validation and test
top-1 before and after, and rewrites the folder (weights, metadata and verified program formats)
atomically. The test split is used for the report only, never for a decision.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from nas import checkpoint as ckpt_io
from nas.data import Batches, load_dataset, load_train_val
from nas.errors import CheckpointError
from nas.evaluate import accuracy, calibrate_bn
from nas.export import calibration_batches, load_metadata, load_subnet, write_export_folder
from nas.training.optim import CosineWarmup, build_optimizer
from nas.training.strategies import LossConfig, distill_loss


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of :func:`finetune_export` (SGD with Nesterov momentum, cosine schedule)."""

    epochs: int = 1
    lr: float = 0.02
    batch_size: int = 128
    weight_decay: float = 5e-5
    kd_temperature: float = 1.0
    calib_images: int = 2000
    seed: int = 0
    device: str = "cpu"
    tolerance: float = 1e-4

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0 or self.batch_size < 1:
            raise ValueError("lr must be > 0 and batch_size >= 1")


def finetune_export(export_dir: str | Path, config: FinetuneConfig = FinetuneConfig(), *,
                    checkpoint: str | Path | None = None, data_root: str | None = None) -> dict[str, Any]:
    """Fine-tunes the subnet of an export folder in place (see the module docstring).

    Args:
        export_dir: a folder written by ``nas export``.
        config: the fine-tuning settings.
        checkpoint: the supernet checkpoint (default: the one recorded in the metadata).
        data_root: where the checkpoint's data set lives.

    Returns:
        ``{"before": {...}, "after": {...}}`` with ``val_top1`` and ``test_top1`` (fractions).

    Raises:
        CheckpointError: the folder or the supernet checkpoint is missing or corrupt.
    """
    export_dir = Path(export_dir)
    metadata = load_metadata(export_dir)
    student = load_subnet(export_dir).to(config.device)
    checkpoint = Path(checkpoint or metadata["checkpoint"]["path"])
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: the supernet checkpoint of this export is not there; "
                              f"pass --checkpoint PATH")
    ckpt = ckpt_io.load_checkpoint(checkpoint, map_location=config.device)
    supernet = ckpt_io.supernet_from_checkpoint(ckpt).to(config.device)
    teacher = supernet.extract(supernet.space.max_arch()).to(config.device)
    del supernet
    train, val = (d.to(config.device) for d in load_train_val(ckpt["data"]["split"], root=data_root))
    test = load_dataset(ckpt["data"]["split"]["dataset"], "test", root=data_root).to(config.device)
    resolution = metadata["input_size"][-1]
    calib = calibration_batches(train, config.calib_images, config.batch_size)
    calibrate_bn(teacher, calib)
    teacher.eval()

    def report() -> dict[str, float]:
        return {"val_top1": accuracy(student, Batches(val, 256, resolution=resolution))[0],
                "test_top1": accuracy(student, Batches(test, 256, resolution=resolution))[0]}

    before = report()
    batches = Batches(train, config.batch_size, shuffle=True, seed=config.seed, augment=True,
                      drop_last=True, resolution=resolution)
    optimizer = build_optimizer(student, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    schedule = CosineWarmup(optimizer, peak_lr=config.lr, warmup_steps=0,
                            total_steps=config.epochs * len(batches))
    loss_config = LossConfig(kd_temperature=config.kd_temperature)
    student.train()
    step = 0
    for epoch in range(config.epochs):
        bar = tqdm(batches, desc=f"finetune {epoch + 1}/{config.epochs}", unit="batch", leave=False)
        for x, y in bar:
            schedule.apply(step)
            with torch.no_grad():
                teacher_logp = F.log_softmax(teacher(x) / config.kd_temperature, dim=1)
            loss = distill_loss(student(x), teacher_logp, y, loss_config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            bar.set_postfix(loss=f"{loss.item():.3f}")
    calibrate_bn(student, calib)
    student.eval()
    after = report()

    metadata["metrics"].update(after)
    metadata["finetune"] = {"epochs": config.epochs, "lr": config.lr, "before": before, "after": after}
    sample = next(iter(Batches(test.to("cpu"), 16, resolution=resolution)))[0]
    write_export_folder(student.cpu(), metadata, export_dir, sample, config.tolerance, force=True)
    return {"before": before, "after": after}
