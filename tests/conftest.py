"""Shared fixtures: the shipped search spaces."""
from pathlib import Path

import pytest

from nas import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
SPACES_DIR = ROOT / "search_spaces"
SHIPPED_SPACES = sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load_space(name: str) -> SearchSpace:
    return SearchSpace.from_yaml(SPACES_DIR / f"{name}.yaml")


@pytest.fixture(scope="session")
def nb201():
    return load_space("nb201")


@pytest.fixture(scope="session")
def demo():
    return load_space("demo")


def save_untrained_demo_checkpoint(path: Path, num_val: int) -> Path:
    """An untrained demo supernet saved as a training run would save it (``num_val`` validation
    images held out of fashion-mnist-small); evaluation and export tests read it."""
    from dataclasses import asdict

    import torch

    from nas import Supernet
    from nas.checkpoint import save_checkpoint
    from nas.data import load_dataset, train_val_split

    torch.manual_seed(0)
    space = load_space("demo")
    net = Supernet(space, num_classes=10, in_channels=1)
    data = load_dataset("fashion-mnist-small")
    _, _, split = train_val_split(data, num_val, 0)
    save_checkpoint({"space": space.to_config(), "model": {"num_classes": 10, "in_channels": 1},
                     "state_dict": net.state_dict(), "config": {}, "step": 0,
                     "data": {"name": "fashion-mnist-small", "info": asdict(data.info),
                              "split": split, "train_subset": 0}}, path)
    return path
