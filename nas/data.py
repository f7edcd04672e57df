"""Data sets, train/val splits and batches for supernet training and search.

What it does:

- loads an image classification data set into one in-memory form, :class:`TensorData` (uint8
  images ``(N, C, H, W)`` and int64 labels), from the Fashion-MNIST subset shipped in the package
  (``fashion-mnist-small``: no download), the full Fashion-MNIST IDX files, or torchvision's MNIST,
  CIFAR-10 and CIFAR-100; a directory of images (``imagefolder:PATH``) stays on disk as
  :class:`ImageFolderData` and is streamed by a DataLoader with worker processes;
- holds out a seeded, class-stratified validation split of the *training* data
  (:func:`train_val_split`) and describes it with a fingerprint a checkpoint can record;
- iterates normalized float batches on the data's device (:class:`Batches`) with augmentation
  done as batched tensor ops; batch ``k`` of epoch ``e`` is a pure function of ``(seed, e, k)``,
  so a run killed mid-epoch resumes at the same batch with the same crops and flips.

What it does not do: download anything unless asked (``download=True``), build validation data
from the test split, or know anything about models and training.
"""

from __future__ import annotations

import gzip
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from nas.errors import ConfigError, DataError

SPLITS = ("train", "test")
DATASET_NAMES = ("fashion-mnist-small", "fashion-mnist", "mnist", "cifar10", "cifar100",
                 "imagefolder:PATH")
EMBEDDED_FILE = Path(__file__).resolve().parent / "datasets" / "fashion_mnist_small.npz"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian: dataset-fashion-mnist
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
DEFAULT_ROOT = "data"  # where torchvision data sets live when no root is given (cwd-relative)

# Per-channel (mean, std) of the training images scaled to [0, 1].
NORMALIZE: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # default for imagefolder
}
_NO_FLIP = frozenset({"mnist"})  # a mirrored digit is another symbol
_CROP_PADDING = {28: 2, 32: 4}  # random-crop padding per image side, as in the usual recipes
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_TORCHVISION = {"fashion-mnist": ("FashionMNIST", "FashionMNIST/raw"),
                "mnist": ("MNIST", "MNIST/raw"), "cifar10": ("CIFAR10", "cifar-10-batches-py"),
                "cifar100": ("CIFAR100", "cifar-100-python")}  # name -> (class, folder under root)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a batch pipeline need to know about a data set.

    Attributes:
        name: the name given to :func:`load_dataset` (e.g. ``"cifar10"``).
        num_classes: number of classes; labels are ``0 .. num_classes - 1``.
        in_channels: image channels (1 for grey, 3 for RGB).
        image_size: side of the square images, in pixels.
        mean: per-channel mean of the training images in [0, 1].
        std: per-channel standard deviation of the training images in [0, 1].
        class_names: one name per label.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ConfigError(f"data set {self.name!r}: mean and std need {self.in_channels} "
                              f"values (one per channel), got {self.mean} and {self.std}")
        if len(self.class_names) != self.num_classes:
            raise ConfigError(f"data set {self.name!r}: {len(self.class_names)} class names for "
                              f"{self.num_classes} classes")


class TensorData:
    """A whole data set in memory: uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``.

    Args:
        images: uint8 tensor ``(N, C, H, W)`` matching ``info`` (channels, square side).
        labels: integer tensor ``(N,)`` on the same device, values in ``[0, num_classes)``.
        info: the :class:`DatasetInfo` of the data set.

    Raises:
        DataError: if the shapes, dtype or label values do not fit ``info``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo):
        expected = (info.in_channels, info.image_size, info.image_size)
        if images.dtype != torch.uint8 or images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise DataError(f"{info.name}: images must be uint8 (N, C, H, W) with (C, H, W) = "
                            f"{expected}, got {images.dtype} {tuple(images.shape)}")
        if labels.shape != images.shape[:1] or labels.device != images.device:
            raise DataError(f"{info.name}: labels must be ({len(images)},) on {images.device}, got "
                            f"{tuple(labels.shape)} on {labels.device}")
        labels = labels.to(torch.int64)
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < info.num_classes:
            raise DataError(f"{info.name}: labels must lie in [0, {info.num_classes}), got "
                            f"[{int(labels.min())}, {int(labels.max())}]")
        self.images, self.labels, self.info = images, labels, info

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return f"TensorData({self.info.name!r}, n={len(self)}, device={self.device})"

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: str | torch.device) -> TensorData:
        """Returns a new TensorData on ``device`` (tensors are shared if already there)."""
        return TensorData(self.images.to(device), self.labels.to(device), self.info)

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> TensorData:
        """Returns the examples at ``indices`` (1-D, each in ``[0, N)``), in that order."""
        idx = torch.as_tensor(indices if torch.is_tensor(indices) else np.asarray(indices),
                              dtype=torch.int64, device=self.device)
        if idx.dim() != 1 or (len(idx) and not 0 <= int(idx.min()) <= int(idx.max()) < len(self)):
            raise ConfigError(f"subset of {self.info.name}: indices must be 1-D, in "
                              f"[0, {len(self)})")
        return TensorData(self.images[idx], self.labels[idx], self.info)


def load_dataset(name: str, split: str = "train", root: str | None = None,
                 download: bool = False) -> TensorData | ImageFolderData:
    """Loads a data set split by name.

    Args:
        name: one of :data:`DATASET_NAMES`; ``imagefolder:PATH`` reads PATH (or PATH/train and
            PATH/val or PATH/test when present).
        split: ``"train"`` or ``"test"``.
        root: folder of the downloaded files (default ``./data``; for ``fashion-mnist`` also
            ``/usr/share/datasets/fashion-mnist``). Ignored by the embedded and imagefolder sets.
        download: let torchvision download a missing data set (needs internet).

    Returns:
        A :class:`TensorData` on the CPU, or an :class:`ImageFolderData` for ``imagefolder:``.

    Raises:
        ConfigError: if ``split`` is not ``"train"`` or ``"test"``.
        DataError: if the name is unknown or the files are missing or malformed.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    if name.startswith("imagefolder:"):
        return _load_imagefolder(name, split)
    if name == "fashion-mnist-small":
        return _load_embedded(split)
    if name == "fashion-mnist":
        return _load_fashion_mnist(split, root, download)
    if name in _TORCHVISION:
        return _load_torchvision(name, split, Path(root or DEFAULT_ROOT), download)
    raise DataError(f"unknown data set {name!r}; valid names: {', '.join(DATASET_NAMES)}")


def _tensor_data(images: np.ndarray, labels: np.ndarray, name: str, stats: str,
                 class_names: Sequence[str]) -> TensorData:
    """Builds TensorData from (N, H, W) or (N, H, W, C) uint8 images."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DataError(f"{name}: expected uint8 images (N, H, W[, C]), got {images.dtype} "
                        f"{images.shape}")
    x = torch.from_numpy(np.require(images, requirements=["C", "W"]))  # "W": no read-only buffer
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
    mean, std = NORMALIZE[stats]
    info = DatasetInfo(name, len(class_names), x.shape[1], x.shape[-1], mean, std,
                       tuple(str(c) for c in class_names))
    return TensorData(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)), info)


def _load_embedded(split: str) -> TensorData:
    rebuild = ("rebuild it with `python scripts/build_embedded_data.py` (needs the Debian package "
               "dataset-fashion-mnist or --source DIR) or reinstall the package")
    if not EMBEDDED_FILE.is_file():
        raise DataError(f"the embedded data set {EMBEDDED_FILE} is missing; {rebuild}")
    try:
        with np.load(EMBEDDED_FILE, allow_pickle=False) as f:
            images, labels = f[f"{split}_images"], f[f"{split}_labels"]
            names = f["class_names"]
    except (KeyError, ValueError, OSError) as e:
        raise DataError(f"{EMBEDDED_FILE} is malformed ({e}); {rebuild}") from e
    return _tensor_data(images, labels, "fashion-mnist-small", "fashion-mnist", names)


def read_idx(path: str | Path) -> np.ndarray:
    """Reads an IDX file of unsigned bytes (the MNIST format), gzip-compressed or not.

    Args:
        path: the file; a ``.gz`` suffix means gzip.

    Returns:
        A uint8 array with the shape written in the file's header.

    Raises:
        DataError: if the file cannot be read, is not IDX of unsigned bytes, or is truncated.
    """
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read {path}: {e}; download or reinstall the file") from e
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) - offset != math.prod(shape):
        raise DataError(f"{path} is truncated or malformed: header says {shape}, file holds "
                        f"{len(raw) - offset} bytes of data")
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(shape)


def find_fashion_mnist(split: str, root: str | Path | None = None) -> tuple[Path, Path]:
    """Finds the Fashion-MNIST IDX files (``.gz`` or not) of a split.

    Looks in ``root``, ``root/FashionMNIST/raw`` (torchvision's layout) and
    ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``), in order.

    Returns:
        The paths of the images file and the labels file.

    Raises:
        DataError: if no folder holds both files.
    """
    dirs = ([Path(root), Path(root) / "FashionMNIST" / "raw"] if root else []) + [FASHION_MNIST_DIR]
    for d in dirs:
        for suffix in (".gz", ""):
            paths = tuple(d / (stem + suffix) for stem in _IDX_FILES[split])
            if all(p.is_file() for p in paths):
                return paths
    raise DataError(f"Fashion-MNIST {split} files ({', '.join(_IDX_FILES[split])}, .gz or not) "
                    f"not found in {', '.join(map(str, dirs))}; install the Debian package "
                    "dataset-fashion-mnist, place the files under ROOT, or pass --download on a "
                    "machine with internet")


def _load_fashion_mnist(split: str, root: str | None, download: bool) -> TensorData:
    try:
        images_path, labels_path = find_fashion_mnist(split, root)
    except DataError:
        if not download:
            raise
        return _load_torchvision("fashion-mnist", split, Path(root or DEFAULT_ROOT), True)
    return _tensor_data(read_idx(images_path), read_idx(labels_path), "fashion-mnist",
                        "fashion-mnist", FASHION_MNIST_CLASSES)


def _load_torchvision(name: str, split: str, root: Path, download: bool) -> TensorData:
    import torchvision.datasets

    cls_name, folder = _TORCHVISION[name]
    try:
        ds = getattr(torchvision.datasets, cls_name)(str(root), train=split == "train",
                                                     download=download)
    except (RuntimeError, OSError) as e:  # not found / corrupted; URLError (no internet) is OSError
        raise DataError(f"{name} ({split}) is missing from {root} and was "
                        f"{'not downloadable' if download else 'not downloaded'} ({e}); pass "
                        f"--download (download=True) on a machine with internet, or place "
                        f"torchvision's files under {root / folder}") from e
    images = ds.data.numpy() if torch.is_tensor(ds.data) else np.asarray(ds.data)
    return _tensor_data(images, np.asarray(ds.targets), name, name, ds.classes)


def _load_imagefolder(name: str, split: str) -> ImageFolderData:
    base = Path(name[len("imagefolder:"):])
    layout = "PATH/CLASS/IMAGE, or PATH/train/CLASS/IMAGE and PATH/val/CLASS/IMAGE"
    if not base.is_dir():
        raise DataError(f"{name}: {base} is not a directory; expected {layout}")
    if not (base / "train").is_dir():
        if split == "test":
            raise DataError(f"{name}: no test split, since {base} has no train/ and val/ (or "
                            f"test/) subfolders; arrange it as {layout}")
        return ImageFolderData(base, name=name)
    for sub in (("train",) if split == "train" else ("val", "test")):
        if (base / sub).is_dir():
            classes = [sorted(p.name for p in (base / s).iterdir() if p.is_dir())
                       for s in ("train", sub)]
            if classes[0] != classes[1]:  # labels are class positions: they would disagree
                raise DataError(f"{name}: {base / sub} has classes {classes[1]}, train/ has "
                                f"{classes[0]}; give both the same class subfolders")
            return ImageFolderData(base / sub, name=name)
    raise DataError(f"{name}: {base} has train/ but no val/ or test/ subfolder for the test split")


class _Transformed(torch.utils.data.Dataset):
    """An ImageFolder whose PIL images go through ``transform`` (picklable for workers)."""

    def __init__(self, folder: Any, transform: Any):
        self.folder, self.transform = folder, transform

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.folder[i]
        return self.transform(image), label


class ImageFolderData:
    """A directory of images, one subfolder per class, read from disk as needed (big data).

    Its batches (:meth:`batches`) have the form of :class:`Batches`: normalized float images
    ``(B, 3, H, W)`` and int64 labels ``(B,)``, but come from a DataLoader whose worker processes
    decode and augment (torchvision transforms) on the CPU; an epoch cannot resume mid-way.

    Args:
        root: folder with one subfolder of images per class (PNG, JPEG, ...).
        image_size: side of the square images the batches have.
        name: the data set's name (default ``imagefolder:ROOT``).
        mean: per-channel mean in [0, 1] (default ImageNet's).
        std: per-channel standard deviation in [0, 1] (default ImageNet's).

    Raises:
        DataError: if ``root`` has no class subfolder or no image.
    """

    def __init__(self, root: str | Path, *, image_size: int = 224, name: str | None = None,
                 mean: tuple[float, ...] = NORMALIZE["imagenet"][0],
                 std: tuple[float, ...] = NORMALIZE["imagenet"][1]):
        from torchvision.datasets import ImageFolder

        try:
            self.folder = ImageFolder(str(root))  # PIL images converted to RGB
        except FileNotFoundError as e:
            raise DataError(f"{root} is not an image folder ({e}); expected ROOT/CLASS/IMAGE "
                            "files (.png, .jpg, ...)") from e
        self.root = Path(root)
        classes = tuple(self.folder.classes)
        self.info = DatasetInfo(name or f"imagefolder:{root}", len(classes), 3, image_size,
                                tuple(mean), tuple(std), classes)

    def __len__(self) -> int:
        return len(self.folder)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                augment: bool = False, drop_last: bool = False, resolution: int | None = None,
                num_workers: int = 2) -> torch.utils.data.DataLoader:
        """Returns a DataLoader of normalized ``(images, labels)`` batches.

        Args:
            batch_size: images per batch.
            shuffle: draw a new order each epoch from a generator seeded with ``seed``.
            seed: seeds the order and the workers' augmentation.
            augment: random resized crop and horizontal flip, instead of resize + centre crop.
            drop_last: drop the last, smaller batch.
            resolution: side of the output images (default ``info.image_size``).
            num_workers: decoding processes (0 decodes in the calling process).
        """
        from torchvision import transforms as T

        size = resolution or self.info.image_size
        resize = ([T.RandomResizedCrop(size), T.RandomHorizontalFlip()] if augment
                  else [T.Resize(size), T.CenterCrop(size)])
        transform = T.Compose([*resize, T.ToTensor(), T.Normalize(self.info.mean, self.info.std)])
        return torch.utils.data.DataLoader(
            _Transformed(self.folder, transform), batch_size=batch_size, shuffle=shuffle,
            drop_last=drop_last, num_workers=num_workers, pin_memory=torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(seed), persistent_workers=num_workers > 0)


def _check_seed(seed: Any, what: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"{what}: seed must be a non-negative int, got {seed!r}")
    return int(seed)


def train_val_split(data: TensorData, val_size: int | float, seed: int, *,
                    expected_sha256: str | None = None) -> tuple[TensorData, TensorData, dict]:
    """Holds out a seeded, class-stratified validation set from training data.

    Every class gives the same fraction of its examples (largest-remainder rounding), so the
    split has the class balance of ``data``. The same data, size and seed give the same split.

    Args:
        data: the training split (never the test split).
        val_size: number of validation examples (int), or their fraction in (0, 1) (float).
        seed: seed of the split.
        expected_sha256: the ``val_indices_sha256`` recorded with a checkpoint; if given, a
            different split (data changed) raises instead of silently training on other data.

    Returns:
        ``(train, val, split)`` where ``split`` records dataset, seed, val_size, num_examples,
        num_train, num_val, val_per_class and val_indices_sha256 (of the sorted int64 indices).

    Raises:
        ConfigError: if ``val_size`` or ``seed`` is invalid.
        DataError: if the rebuilt split does not match ``expected_sha256``.
    """
    n, seed = len(data), _check_seed(seed, "train_val_split")
    if isinstance(val_size, (int, np.integer)) and not isinstance(val_size, bool):
        num_val = int(val_size)
    elif isinstance(val_size, float) and 0 < val_size < 1:
        num_val = round(val_size * n)
    else:
        raise ConfigError(f"val_size must be an int count or a float fraction in (0, 1), got "
                          f"{val_size!r}")
    if not 0 < num_val < n:
        raise ConfigError(f"val_size={val_size!r} gives {num_val} validation examples out of {n};"
                          f" it must leave at least one example on each side")
    labels = data.labels.cpu().numpy()
    counts = np.bincount(labels, minlength=data.info.num_classes)
    quota = num_val * counts / n
    per_class = np.floor(quota).astype(np.int64)
    leftover = np.argsort(-(quota - per_class), kind="stable")[:num_val - per_class.sum()]
    per_class[leftover] += 1
    rng = np.random.default_rng(seed)
    val_idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k]
                                      for c, k in enumerate(per_class)]))
    fingerprint = hashlib.sha256(val_idx.astype("<i8").tobytes()).hexdigest()
    if expected_sha256 is not None and fingerprint != expected_sha256:
        raise DataError(f"the validation split of {data.info.name} (seed {seed}, val_size "
                        f"{val_size!r}) has fingerprint {fingerprint}, not the recorded "
                        f"{expected_sha256}: the data set differs from the one used before")
    train_idx = np.setdiff1d(np.arange(n), val_idx, assume_unique=True)
    split = {"dataset": data.info.name, "seed": seed,
             "val_size": val_size if isinstance(val_size, float) else num_val, "num_examples": n,
             "num_train": len(train_idx), "num_val": len(val_idx),
             "val_per_class": per_class.tolist(), "val_indices_sha256": fingerprint}
    return data.subset(train_idx), data.subset(val_idx), split


def load_train_val(record: dict, root: str | None = None) -> tuple[TensorData, TensorData]:
    """Rebuilds the (train, val) split a checkpoint recorded, checking its fingerprint.

    Args:
        record: the ``split`` dict returned by :func:`train_val_split` (``dataset``, ``seed``,
            ``val_size``, ``val_indices_sha256``), as stored in a checkpoint.
        root: where the data set lives (see :func:`load_dataset`).

    Raises:
        DataError: the data set is missing or differs from the one the record was made on.
    """
    data = load_dataset(record["dataset"], "train", root=root)
    if not isinstance(data, TensorData):
        raise DataError(f"{record['dataset']}: only in-memory data sets can be re-split here")
    train, val, _ = train_val_split(data, record["val_size"], record["seed"],
                                    expected_sha256=record["val_indices_sha256"])
    return train, val


def _derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for the stream ``(seed, *keys)``, independent of other key tuples."""
    state = np.random.SeedSequence(seed, spawn_key=keys).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def random_crop_flip(images: torch.Tensor, padding: int, *, flip: bool,
                     generator: torch.Generator) -> torch.Tensor:
    """Randomly crops each zero-padded image of a batch and, if ``flip``, mirrors half of them.

    The batched equivalent of torchvision's ``RandomCrop(size, padding)`` and
    ``RandomHorizontalFlip()``: one gather on the images' device, no loop over images. The
    random numbers come from ``generator`` (a CPU generator), so the result is device-independent.

    Args:
        images: float batch ``(B, C, H, W)``.
        padding: zero pixels added on each side; crops shift by up to ``padding`` each way.
        flip: also mirror each image left-right with probability 1/2.
        generator: CPU generator the shifts and flips are drawn from.

    Returns:
        A tensor of the shape and dtype of ``images``.
    """
    b, _, h, w = images.shape
    dev = images.device
    shifts = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(dev)
    rows = shifts[0, :, None] + torch.arange(h, device=dev)  # (B, H)
    cols = shifts[1, :, None] + torch.arange(w, device=dev)  # (B, W)
    if flip:
        mirror = (torch.rand(b, generator=generator) < 0.5).to(dev)
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    padded = F.pad(images, (padding,) * 4).permute(0, 2, 3, 1)  # (B, H + 2p, W + 2p, C)
    batch = torch.arange(b, device=dev)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


class Batches:
    """Normalized float batches over a :class:`TensorData` on its device, resumable mid-epoch.

    Batch ``k`` of epoch ``e`` is a pure function of ``(seed, e, k)``: the epoch's order comes from
    a generator seeded with ``(seed, e)`` and the batch's crops and flips from one seeded with
    ``(seed, e, k)``, both on the CPU, so neither depends on the device nor on what ran before.
    Iterating yields the rest of the current epoch; the position (:attr:`epoch`, :attr:`step`)
    moves past each batch as it is yielded, so :meth:`state_dict` taken after training on a batch
    resumes at the next one. ``len(batches)`` is the number of batches per epoch.

    Args:
        data: the examples, already on the device the batches should be on.
        batch_size: examples per batch.
        shuffle: a new order every epoch (otherwise the data's order).
        seed: an int, or a ``torch.Generator`` from which one int seed is drawn once here.
        augment: random crop (padding 2 for 28-pixel images, 4 for 32) and, except for digits,
            horizontal flip, as batched ops on the device.
        drop_last: drop the last, smaller batch of an epoch.
        resolution: resize batches to this side (bilinear) when it differs from the data's.

    Raises:
        ConfigError: if an argument is invalid or the data gives no batch.
    """

    def __init__(self, data: TensorData, batch_size: int, *, shuffle: bool = False,
                 seed: int | torch.Generator = 0, augment: bool = False, drop_last: bool = False,
                 resolution: int | None = None):
        if isinstance(seed, torch.Generator):
            seed = int(torch.randint(0, 2**62, (), generator=seed))
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
            raise ConfigError(f"resolution must be a positive int or None, got {resolution!r}")
        self.data, self.batch_size, self.shuffle = data, batch_size, shuffle
        self.seed, self.augment, self.drop_last = _check_seed(seed, "Batches"), augment, drop_last
        self.resolution = resolution
        if len(self) == 0:
            raise ConfigError(f"{data.info.name}: {len(data)} examples give no batch of "
                              f"{batch_size} (drop_last={drop_last}); use a smaller batch_size")
        info = data.info
        self._padding = _CROP_PADDING.get(info.image_size, max(1, info.image_size // 8))
        self._flip = info.name not in _NO_FLIP
        self._mean = torch.tensor(info.mean, device=data.device).view(1, -1, 1, 1)
        self._std = torch.tensor(info.std, device=data.device).view(1, -1, 1, 1)
        self._order_cache: tuple[int, torch.Tensor] | None = None
        self.epoch, self.step = 0, 0

    def __len__(self) -> int:
        n, b = len(self.data), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _order(self, epoch: int) -> torch.Tensor:
        if self._order_cache is None or self._order_cache[0] != epoch:
            n = len(self.data)
            order = (torch.randperm(n, generator=torch.Generator().manual_seed(
                _derive_seed(self.seed, epoch))) if self.shuffle else torch.arange(n))
            self._order_cache = (epoch, order.to(self.data.device))
        return self._order_cache[1]

    def batch(self, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns batch ``step`` of epoch ``epoch``: float images (B, C, H, W), labels (B,).

        Raises:
            ConfigError: if ``epoch < 0`` or ``step`` is not in ``[0, len(self))``.
        """
        if epoch < 0 or not 0 <= step < len(self):
            raise ConfigError(f"batch (epoch {epoch}, step {step}) does not exist: epochs start "
                              f"at 0 and steps lie in [0, {len(self)})")
        idx = self._order(epoch)[step * self.batch_size:(step + 1) * self.batch_size]
        x = self.data.images[idx].float().div_(255)  # (B, C, H, W) in [0, 1]
        if self.augment:
            g = torch.Generator().manual_seed(_derive_seed(self.seed, epoch, step))
            x = random_crop_flip(x, self._padding, flip=self._flip, generator=g)
        x = (x - self._mean) / self._std
        if self.resolution is not None and self.resolution != x.shape[-1]:
            x = F.interpolate(x, size=(self.resolution,) * 2, mode="bilinear",
                              align_corners=False, antialias=False)
        return x, self.data.labels[idx]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        while self.epoch == epoch:
            x, y = self.batch(self.epoch, self.step)
            self.step += 1
            if self.step == len(self):  # advance before yielding: a state saved now is (e + 1, 0)
                self.epoch, self.step = self.epoch + 1, 0
            yield x, y

    def state_dict(self) -> dict:
        """The position (epoch, step) and the settings it is valid for."""
        return {"seed": self.seed, "epoch": self.epoch, "step": self.step,
                "batch_size": self.batch_size, "num_examples": len(self.data),
                "shuffle": self.shuffle, "augment": self.augment, "drop_last": self.drop_last,
                "resolution": self.resolution}

    def load_state_dict(self, state: dict) -> None:
        """Restores the seed and the position saved by :meth:`state_dict`.

        Raises:
            ConfigError: if a setting differs from these batches' or the position is invalid.
        """
        for key, value in self.state_dict().items():
            if key not in state:
                raise ConfigError(f"Batches state lacks {key!r}; was it saved by state_dict()?")
            if key not in ("seed", "epoch", "step") and state[key] != value:
                raise ConfigError(f"Batches state was saved with {key}={state[key]!r} but these "
                                  f"batches have {key}={value!r}; build them with the saved value")
        if state["epoch"] < 0 or not 0 <= state["step"] < len(self):
            raise ConfigError(f"Batches state has epoch {state['epoch']}, step {state['step']}; "
                              f"steps lie in [0, {len(self)})")
        self.seed = _check_seed(state["seed"], "Batches state")
        self.epoch, self.step, self._order_cache = state["epoch"], state["step"], None
