"""Strict config loading."""
from dataclasses import dataclass
from typing import Literal

import pytest

from nas.config import from_mapping, parse_overrides, to_mapping
from nas.errors import ConfigError


@dataclass(frozen=True)
class _Cfg:
    epochs: int = 1
    lr: float = 0.1
    strategy: Literal["a", "b"] = "a"
    widths: tuple[int, ...] = (1, 2)
    out: str | None = None

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


def test_mapping_builds_and_round_trips():
    cfg = from_mapping(_Cfg, {"epochs": 3, "lr": 1, "widths": [4], "strategy": "b"})
    assert cfg == _Cfg(epochs=3, lr=1.0, strategy="b", widths=(4,))
    assert from_mapping(_Cfg, to_mapping(cfg)) == cfg


@pytest.mark.parametrize("mapping, message", [
    ({"epoch": 3}, "unknown key 'epoch'; allowed keys: epochs, lr, out, strategy, widths"),
    ({"epochs": "3"}, "epochs: expected an integer"),
    ({"epochs": 2.5}, "epochs: expected an integer"),
    ({"lr": "fast"}, "lr: expected a number"),
    ({"strategy": "c"}, "'c' is not allowed; choose one of a, b"),
    ({"widths": 4}, "widths: expected a list"),
    ({"epochs": 0}, "epochs must be >= 1"),
])
def test_bad_values_name_the_key(mapping, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(_Cfg, mapping, source="recipe.yaml")


def test_overrides_parse_yaml_scalars():
    assert parse_overrides(["epochs=3", "lr=0.5", "out=x", "widths=[1, 2]"]) == {
        "epochs": 3, "lr": 0.5, "out": "x", "widths": [1, 2]}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["epochs"])
