"""The tabular evaluator: metrics looked up in a per-arch CSV table instead of a supernet.

With a benchmark table such as NAS-Bench-201's (``arch`` = the official cell string, accuracy
and per-device latency columns), the searchers can be checked against known answers without
training anything. The table is a ``.csv`` or ``.csv.gz`` file with an ``arch`` column; rows are
joined on the canonical arch string ``str(arch)`` (strings in the table that are not canonical
are parsed with the space once, on the first miss).

Column rules:

* accuracy column -> metric ``top1`` as a fraction: a column whose largest value is above 1 is
  in percent and is divided by 100 (NAS-Bench-201's columns are percents), otherwise it is used
  as is;
* latency column ``lat_ms_DEVICE`` (also ``latency_ms_DEVICE`` or ``latency_ms.DEVICE``) ->
  metric ``latency_ms.DEVICE``, in milliseconds; any other column name is its own device name;
* ``params`` and ``flops`` are not read from the table: they come from the space's walk of the
  arch (``SearchSpace.params`` / ``flops``), as for a supernet.

A missing file, column or arch is a :class:`~nas.errors.NASError` that says what exists.
This module is torch-free and does not choose archs.
"""
from __future__ import annotations

import csv
import gzip
import math
import re
from pathlib import Path
from typing import Sequence

from nas.candidate import FLOPS, PARAMS, TOP1
from nas.errors import ConfigError, DataError, NASError
from nas.space import Arch, SearchSpace

ARCH_COLUMN = "arch"


class Table:
    """A CSV table of per-arch values, read once (see the module docstring).

    Raises:
        DataError: a missing or unreadable file, or no ``arch`` column.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        opener = gzip.open if self.path.suffix == ".gz" else open
        try:
            with opener(self.path, "rt", newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                rows = list(reader)
        except FileNotFoundError:
            raise DataError(f"{self.path}: table not found") from None
        except (OSError, csv.Error, UnicodeDecodeError, EOFError) as exc:
            raise DataError(f"{self.path}: cannot read the table ({type(exc).__name__}: {exc})") \
                from None
        if not header or ARCH_COLUMN not in header:
            raise DataError(f"{self.path}: the table has no {ARCH_COLUMN!r} column (columns: "
                            f"{', '.join(header or []) or 'none'})")
        self.columns = [c for c in header if c != ARCH_COLUMN]
        self._index = {name: i for i, name in enumerate(header)}
        self._rows = rows
        self.arch_strings = [r[self._index[ARCH_COLUMN]] for r in rows]
        self._values: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def column(self, name: str) -> list[float]:
        """The values of column ``name`` as floats (NaN where empty), in row order.

        Raises:
            ConfigError: no such column (the message lists the available ones) or a value that
                is not a number.
        """
        if name not in self._values:
            if name not in self.columns:
                raise ConfigError(f"{self.path}: no column {name!r}; available columns: "
                                  f"{', '.join(self.columns)}")
            i = self._index[name]
            values = []
            for row_no, row in enumerate(self._rows, start=2):
                text = row[i].strip() if i < len(row) else ""
                try:
                    values.append(float(text) if text else math.nan)
                except ValueError:
                    raise ConfigError(f"{self.path}:{row_no}: column {name!r} holds {text!r}, "
                                      "not a number") from None
            self._values[name] = values
        return self._values[name]


def device_of_column(column: str) -> str:
    """``lat_ms_raspi4`` -> ``raspi4`` (also ``latency_ms_X``, ``latency_ms.X``); other names
    are returned as they are."""
    m = re.fullmatch(r"(?:lat_ms_|latency_ms_|latency_ms\.)(.+)", column)
    return m.group(1) if m else column


class _Lookup:
    """Row lookup by canonical arch string, shared by the evaluator and latency columns."""

    def __init__(self, table: Table, space: SearchSpace):
        self.table, self.space = table, space
        self._rows = {s: i for i, s in enumerate(table.arch_strings)}
        self._canonical = False

    def row(self, arch: Arch) -> int:
        key = str(arch)
        i = self._rows.get(key)
        if i is None and not self._canonical:
            self._canonicalise()
            i = self._rows.get(key)
        if i is None:
            raise DataError(f"{self.table.path}: arch {key} is not in the table ({len(self.table)} "
                            f"rows); is the table for search space {self.space.name!r}?")
        return i

    def _canonicalise(self) -> None:
        """Adds the canonical form of every table string that parses in the space."""
        self._canonical = True
        for i, text in enumerate(self.table.arch_strings):
            try:
                self._rows.setdefault(str(self.space.parse(text)), i)
            except NASError:
                continue

    def value(self, column: list[float], name: str, arch: Arch) -> float:
        v = column[self.row(arch)]
        if math.isnan(v):
            raise DataError(f"{self.table.path}: column {name!r} is empty for arch {arch}")
        return v


class TableLatency:
    """A latency model that reads one latency column (``device`` from the column name).

    Attributes:
        device: the device name (``lat_ms_raspi4`` -> ``raspi4``).
        calls: archs looked up so far.
        cheap: a lookup, which searchers may make for archs they only consider.
    """

    cheap = True

    def __init__(self, table: Table, space: SearchSpace, column: str, *,
                 lookup: _Lookup | None = None):
        self.column_name = column
        self._values = table.column(column)
        self._lookup = lookup or _Lookup(table, space)
        self.device = device_of_column(column)
        self.calls = 0

    def latency_ms(self, arch: Arch) -> float:
        self.calls += 1
        return self._lookup.value(self._values, self.column_name, arch)


class TableEvaluator:
    """Looks ``top1`` up in a table, computes ``params`` and ``flops`` from the space.

    Same call as the supernet evaluator: ``evaluate(archs, num_val_images=None)`` (the table
    has one fidelity; ``num_val_images`` must be None).

    Args:
        table: the table (or its path).
        space: the search space the archs come from.
        accuracy_column: the column read as top-1 (percent or fraction, see the module).
        latency_columns: columns exposed as :attr:`latency_models` (one device each).
        in_channels, num_classes: for the parameter and FLOP counts.

    Attributes:
        calls: archs evaluated so far (tests check that a resumed search re-evaluates none).
    """

    def __init__(self, table: Table | str | Path, space: SearchSpace, accuracy_column: str, *,
                 latency_columns: Sequence[str] = (), in_channels: int = 3, num_classes: int = 10):
        self.table = table if isinstance(table, Table) else Table(table)
        self.space = space
        self.accuracy_column = accuracy_column
        values = self.table.column(accuracy_column)
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            raise ConfigError(f"{self.table.path}: column {accuracy_column!r} is empty")
        self.percent = max(finite) > 1.0  # the documented rule: percent columns exceed 1
        self._top1 = [v / 100.0 for v in values] if self.percent else list(values)
        self._lookup = _Lookup(self.table, space)
        self._model = {"in_channels": in_channels, "num_classes": num_classes}
        self.latency_models = [TableLatency(self.table, space, c, lookup=self._lookup)
                               for c in latency_columns]
        devices = [m.device for m in self.latency_models]
        for d in devices:
            if devices.count(d) > 1:
                raise ConfigError(f"two latency columns map to device {d!r}")
        self.calls = 0
        self._counts: dict[Arch, tuple[float, float]] = {}

    def evaluate(self, archs: Sequence[Arch], num_val_images: int | None = None) -> list[dict]:
        """Metric dicts (``top1``, ``params``, ``flops``) of ``archs``, in order.

        Raises:
            DataError: an arch missing from the table.
            ConfigError: ``num_val_images`` given (a table has a single fidelity).
        """
        if num_val_images is not None:
            raise ConfigError("a table evaluator has one fidelity; successive halving needs a "
                              "supernet checkpoint")
        out = []
        for arch in archs:
            self.calls += 1
            top1 = self._lookup.value(self._top1, self.accuracy_column, arch)
            if arch not in self._counts:
                self._counts[arch] = (float(self.space.params(arch, **self._model)),
                                      float(self.space.flops(arch, **self._model)))
            params, flops = self._counts[arch]
            out.append({TOP1: top1, PARAMS: params, FLOPS: flops})
        return out
