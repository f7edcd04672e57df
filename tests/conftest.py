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
