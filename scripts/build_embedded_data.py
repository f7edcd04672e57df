"""Builds the Fashion-MNIST subset shipped in the package (nas/datasets/fashion_mnist_small.npz).

Picks, with a seeded generator, 1,200 training images per class from the official training file
and 200 test images per class from the official test file (so the two splits never share an
image), and writes them with the class names and provenance to a compressed .npz whose bytes
depend only on the source files and the seed (fixed zip timestamps), so a rebuild does not show
up as a change in git.

Usage:
    python scripts/build_embedded_data.py [--source DIR] [--seed 0] [--output PATH]

It reads the IDX files (``train-images-idx3-ubyte.gz`` ...) from --source, or from
/usr/share/datasets/fashion-mnist (Debian package ``dataset-fashion-mnist``). It does not
download anything.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from nas.data import (  # noqa: E402
    EMBEDDED_FILE, FASHION_MNIST_CLASSES, find_fashion_mnist, read_idx,
)
from nas.errors import DataError  # noqa: E402

MAX_BYTES = 8 * 1024 * 1024
PER_CLASS = {"train": 1200, "test": 200}


def balanced_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Returns ``per_class`` indices of every class drawn without replacement, sorted.

    Raises:
        DataError: if a class has fewer than ``per_class`` examples.
    """
    chosen = []
    for c in range(len(FASHION_MNIST_CLASSES)):
        pool = np.flatnonzero(labels == c)
        if len(pool) < per_class:
            raise DataError(f"class {c} has {len(pool)} examples, fewer than {per_class}")
        chosen.append(rng.choice(pool, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def build_arrays(source: Path | None, seed: int) -> dict[str, np.ndarray]:
    """Reads the official files and returns the arrays of the subset (uint8 images, labels)."""
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    arrays: dict[str, np.ndarray] = {}
    provenance = {"seed": seed, "per_class": PER_CLASS, "source_sha256": {}}
    for split, rng in (("train", train_rng), ("test", test_rng)):
        images_path, labels_path = find_fashion_mnist(split, source)
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
            raise DataError(f"{images_path}: unexpected shapes {images.shape}, {labels.shape}")
        idx = balanced_indices(labels, PER_CLASS[split], rng)
        arrays[f"{split}_images"] = np.ascontiguousarray(images[idx])  # (N, 28, 28) uint8
        arrays[f"{split}_labels"] = labels[idx].astype(np.uint8)
        arrays[f"{split}_source_index"] = idx.astype(np.int32)  # row in the official file
        for p in (images_path, labels_path):
            provenance["source_sha256"][p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    arrays["class_names"] = np.array(FASHION_MNIST_CLASSES)
    arrays["provenance"] = np.array(json.dumps(provenance, sort_keys=True))
    return arrays


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Serializes like ``np.savez_compressed``, with fixed timestamps so equal arrays give
    equal bytes (np.savez_compressed stamps every member with the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arrays[name], allow_pickle=False)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=None,
                        help="folder of the Fashion-MNIST IDX files (default: the Debian path)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subset (default 0)")
    parser.add_argument("--output", type=Path, default=EMBEDDED_FILE)
    args = parser.parse_args(argv)
    try:
        arrays = build_arrays(args.source, args.seed)
        again = build_arrays(args.source, args.seed)  # reproducibility check, same seed
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if any(arrays[k].tobytes() != again[k].tobytes() for k in arrays):
        print("error: two builds with the same seed differ", file=sys.stderr)
        return 1
    data = npz_bytes(arrays)
    if data != npz_bytes(again) or len(data) > MAX_BYTES:
        print(f"error: not reproducible or too big ({len(data)} > {MAX_BYTES} bytes)",
              file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    print(f"wrote {args.output}: {len(data) / 2**20:.2f} MiB, sha256 "
          f"{hashlib.sha256(data).hexdigest()}, "
          + ", ".join(f"{k} {v.shape}" for k, v in arrays.items() if k.endswith("images")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
