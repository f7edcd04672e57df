"""Checkpoints: atomic, self-describing, and loaded without executing code.

A checkpoint is a plain dict of tensors and primitive values (saved with ``torch.save``) that
carries everything needed to rebuild and resume: the search space (as its YAML mapping), the
model arguments, the supernet weights, the resolved config, the data split, the step, the
optimizer and scheduler states, the RNG states and the format version. Loading uses
``torch.load(weights_only=True)``, so a file carrying a pickle payload is refused, never run.

This module does not decide *when* to save; see :mod:`nas.train`.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from nas.errors import CheckpointError
from nas.space import SearchSpace
from nas.supernet import Supernet

FORMAT = "ofa-nas-supernet"
FORMAT_VERSION = 1


def atomic_write_bytes(path: str | Path, write) -> None:
    """Writes a file atomically: ``write(fileobj)`` into a temporary file in the same folder,
    flush, fsync, then rename over ``path``. A crash leaves the old file or the new one, never
    half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for a text file (UTF-8)."""
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> None:
    """Saves a checkpoint dict atomically, stamping the format and its version.

    ``payload`` must hold only tensors and plain Python data (dicts, lists, tuples, numbers,
    strings, None), so that :func:`load_checkpoint` can read it with ``weights_only=True``.
    """
    payload = {**payload, "format": FORMAT, "format_version": FORMAT_VERSION}
    atomic_write_bytes(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Loads a checkpoint safely.

    Raises:
        CheckpointError: missing file, truncated or corrupt file, a pickle payload (objects other
            than tensors and plain data), or another format or format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: refusing to load: the file holds objects other than tensors and plain data "
            f"(a pickle payload could run code); {first}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a supernet checkpoint of this framework "
                              f"(expected format {FORMAT!r})")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {ckpt.get('format_version')!r} "
                              f"is not supported (this version reads {FORMAT_VERSION})")
    return ckpt


def fingerprint(path: str | Path) -> str:
    """A short content hash of a file (e.g. to key caches by checkpoint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def supernet_from_checkpoint(ckpt: dict[str, Any]) -> Supernet:
    """Rebuilds the supernet (space and weights) that a loaded checkpoint describes."""
    space = SearchSpace.from_config(ckpt["space"], source="<checkpoint>")
    model = Supernet(space, **ckpt["model"])
    model.load_state_dict(ckpt["state_dict"])
    return model
