"""Tests of nas/data.py and the embedded Fashion-MNIST subset: sizes, splits, batches, errors."""

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas.data import (
    EMBEDDED_FILE, FASHION_MNIST_DIR, Batches, DatasetInfo, ImageFolderData, TensorData,
    load_dataset, random_crop_flip, read_idx, train_val_split,
)
from nas.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_train():
    return load_dataset("fashion-mnist-small", "train")


def indexed_data(counts, image_size=8):
    """Synthetic data whose class c has counts[c] examples and whose image i encodes i."""
    labels = torch.tensor(np.repeat(np.arange(len(counts)), counts))
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    n = len(labels)
    images = torch.zeros(n, 1, image_size, image_size, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) // 256
    images[:, 0, 0, 1] = torch.arange(n) % 256
    info = DatasetInfo("synthetic", len(counts), 1, image_size, (0.0,), (1.0,),
                       tuple(str(c) for c in range(len(counts))))
    return TensorData(images, labels, info)


def index_of(data):
    return (data.images[:, 0, 0, 0].long() * 256 + data.images[:, 0, 0, 1].long()).tolist()


def test_embedded_sizes_balance_and_file_size(small_train):
    test = load_dataset("fashion-mnist-small", "test")
    assert EMBEDDED_FILE.stat().st_size <= 8 * 1024 * 1024
    for data, n, per_class in ((small_train, 12000, 1200), (test, 2000, 200)):
        assert data.images.shape == (n, 1, 28, 28) and data.images.dtype == torch.uint8
        assert data.labels.dtype == torch.int64
        assert torch.bincount(data.labels, minlength=10).tolist() == [per_class] * 10
    assert small_train.info.class_names[0] == "T-shirt/top" and small_train.info.num_classes == 10


def test_embedded_test_images_come_from_the_other_file(small_train):
    test = load_dataset("fashion-mnist-small", "test")
    digest = lambda d: {hashlib.sha1(row.numpy().tobytes()).hexdigest() for row in d.images}
    train_hashes = digest(small_train)
    assert len(train_hashes) == 12000 and not train_hashes & digest(test)
    with np.load(EMBEDDED_FILE) as f:
        assert len(np.unique(f["train_source_index"])) == 12000
        assert f["test_source_index"].max() < 10000  # rows of the official 10,000-image test file


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs dataset-fashion-mnist")
def test_build_script_reproduces_the_shipped_file_byte_for_byte():
    spec = importlib.util.spec_from_file_location("build", ROOT / "scripts/build_embedded_data.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    arrays = build.build_arrays(None, seed=0)
    assert build.npz_bytes(arrays) == EMBEDDED_FILE.read_bytes()
    other = build.balanced_indices(read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz"),
                                   200, np.random.default_rng(1))
    assert not np.array_equal(other, arrays["test_source_index"])


def test_split_is_disjoint_stratified_and_seeded():
    data = indexed_data([50 + 13 * c for c in range(5)])  # unbalanced: 50, 63, 76, 89, 102
    train, val, split = train_val_split(data, 0.2, seed=3)
    train_idx, val_idx = index_of(train), index_of(val)
    assert not set(train_idx) & set(val_idx)
    assert sorted(train_idx + val_idx) == list(range(len(data)))
    assert split["num_val"] == len(val) == round(0.2 * len(data))
    per_class = torch.bincount(val.labels, minlength=5).tolist()
    assert per_class == split["val_per_class"]
    assert all(abs(k - 0.2 * (50 + 13 * c)) < 1 for c, k in enumerate(per_class))
    assert split["val_indices_sha256"] == hashlib.sha256(
        np.array(sorted(val_idx), dtype="<i8").tobytes()).hexdigest()
    _, val_again, again = train_val_split(data, 0.2, seed=3)
    assert index_of(val_again) == val_idx and again == split
    _, val_other, other = train_val_split(data, 0.2, seed=4)
    assert set(index_of(val_other)) != set(val_idx)
    assert other["val_indices_sha256"] != split["val_indices_sha256"]
    assert train_val_split(data, 37, seed=3)[2]["num_val"] == 37


def test_split_of_embedded_set_and_recorded_fingerprint(small_train):
    _, val, split = train_val_split(small_train, 1000, seed=0)
    assert split["val_per_class"] == [100] * 10
    train_val_split(small_train, 1000, 0, expected_sha256=split["val_indices_sha256"])
    with pytest.raises(DataError, match="fingerprint"):
        train_val_split(small_train, 1000, 1, expected_sha256=split["val_indices_sha256"])


@pytest.mark.parametrize("val_size", [0, 1.0, 1.5, -3, True, 420, "0.1"])
def test_split_rejects_bad_val_size(val_size):
    with pytest.raises(ConfigError, match="val_size"):
        train_val_split(indexed_data([40] * 10), val_size, seed=0)


def test_batches_cover_each_example_once_per_epoch_in_a_new_order():
    data = indexed_data([30] * 7)
    batches = Batches(data, 32, shuffle=True, seed=1)
    assert len(batches) == 7  # 210 / 32, rounded up
    raw = lambda x: (x * 255).round().long()  # mean 0, std 1: batches hold pixels / 255
    epochs = [[i for x, _ in batches
               for i in (raw(x[:, 0, 0, 0]) * 256 + raw(x[:, 0, 0, 1])).tolist()]
              for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(210))
    assert epochs[0] != epochs[1] and batches.state_dict()["epoch"] == 2
    assert len(Batches(data, 32, drop_last=True)) == 6


def test_batch_k_of_epoch_e_is_rebuilt_exactly_on_resume(small_train):
    kwargs = dict(shuffle=True, seed=7, augment=True)
    run = Batches(small_train.subset(range(1000)), 100, **kwargs)
    list(run)  # epoch 0
    stream = iter(run)
    for _ in range(4):
        next(stream)
    state = run.state_dict()
    assert (state["epoch"], state["step"]) == (1, 4)
    expected = next(stream)
    resumed = Batches(small_train.subset(range(1000)), 100, **kwargs)
    resumed.load_state_dict(state)
    got = next(iter(resumed))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    torch.testing.assert_close(Batches(small_train.subset(range(1000)), 100, **kwargs).batch(1, 4),
                               expected, rtol=0, atol=0)
    gen = lambda: Batches(small_train, 100, shuffle=True, seed=torch.Generator().manual_seed(5))
    torch.testing.assert_close(gen().batch(2, 3), gen().batch(2, 3), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="batch_size"):
        Batches(small_train.subset(range(1000)), 50, **kwargs).load_state_dict(state)


@pytest.mark.parametrize("flip", [True, False])
def test_random_crop_flip_is_a_shifted_crop_of_each_image(flip):
    images = torch.rand(16, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    out = random_crop_flip(images, 2, flip=flip, generator=torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == images.dtype
    padded = F.pad(images, (2, 2, 2, 2))
    found = []
    for i in range(16):
        matches = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                   if torch.equal(out[i], (lambda c: c.flip(-1) if f else c)(
                       padded[i, :, dy:dy + 8, dx:dx + 8]))]
        assert matches, f"image {i} is not a crop of its padded original"
        found.append(matches[0])
    assert len({(dy, dx) for dy, dx, _ in found}) > 3  # the shifts vary
    assert any(f for *_, f in found) == flip


def test_augmentation_changes_images_and_resolution_resizes(small_train):
    plain = Batches(small_train, 64, seed=2).batch(0, 0)
    augmented = Batches(small_train, 64, seed=2, augment=True).batch(0, 0)
    assert augmented[0].shape == plain[0].shape and augmented[0].dtype == torch.float32
    assert torch.equal(augmented[1], plain[1]) and not torch.equal(augmented[0], plain[0])
    resized = Batches(small_train, 64, resolution=32).batch(0, 0)[0]
    assert resized.shape == (64, 1, 32, 32)


def test_normalized_set_has_zero_mean_and_unit_std(small_train):
    x = torch.cat([x for x, _ in Batches(small_train, 4000)])
    assert x.shape == (12000, 1, 28, 28)
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.03


def test_unknown_name_and_bad_split_errors():
    with pytest.raises(DataError) as err:
        load_dataset("imagenet")
    for name in ("fashion-mnist-small", "fashion-mnist", "mnist", "cifar10", "cifar100",
                 "imagefolder:PATH"):
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="split"):
        load_dataset("fashion-mnist-small", "val")


def test_missing_cifar10_without_download_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", root=str(tmp_path))
    message = str(err.value)
    assert "--download" in message and str(tmp_path / "cifar-10-batches-py") in message


def test_cifar_arrays_become_channel_first_tensors(monkeypatch):
    import torchvision.datasets

    pixels = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)

    class FakeCIFAR10:  # torchvision's attributes: HWC uint8 array, list of ints, class names
        def __init__(self, root, train, download):
            self.data, self.targets, self.classes = pixels, [0, 1, 2, 3, 9], list("abcdefghij")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    data = load_dataset("cifar10")
    assert data.images.shape == (5, 3, 32, 32) and data.info.mean[2] == pytest.approx(0.4465)
    assert torch.equal(data.images[2, 1], torch.from_numpy(pixels[2, :, :, 1]))
    assert data.labels.tolist() == [0, 1, 2, 3, 9] and data.info.class_names[9] == "j"


def test_malformed_idx_file_is_a_data_error(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")  # says 5 bytes, holds 3
    with pytest.raises(DataError, match="truncated"):
        read_idx(bad)


def test_tensor_data_subset_and_validation(small_train):
    sub = small_train.subset([5, 2, 5])
    assert torch.equal(sub.images[0], small_train.images[5]) and len(sub) == 3
    assert sub.to("cpu").device.type == "cpu"
    with pytest.raises(ConfigError):
        small_train.subset([12000])
    with pytest.raises(DataError, match="labels"):
        TensorData(sub.images, torch.tensor([0, 1, 10]), sub.info)


def test_imagefolder_batches_from_generated_pngs(tmp_path):
    from PIL import Image

    colors = {"cat": (255, 0, 0), "dog": (0, 0, 255)}
    for split, count in (("train", 3), ("val", 2)):
        for name, color in colors.items():
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (12, 10), color).save(tmp_path / split / name / f"{i}.png")
    train = load_dataset(f"imagefolder:{tmp_path}", "train")
    val = load_dataset(f"imagefolder:{tmp_path}", "test")
    assert isinstance(train, ImageFolderData) and (len(train), len(val)) == (6, 4)
    assert train.info.class_names == ("cat", "dog") and train.info.in_channels == 3
    batches = list(train.batches(4, resolution=8, num_workers=2))
    images = torch.cat([x for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    assert [x.shape for x, _ in batches] == [(4, 3, 8, 8), (2, 3, 8, 8)]
    assert labels.tolist() == [0, 0, 0, 1, 1, 1] and labels.dtype == torch.int64
    mean, std = torch.tensor(train.info.mean), torch.tensor(train.info.std)
    for image, label in zip(images, labels):
        rgb = torch.tensor(colors[train.info.class_names[label]]) / 255
        torch.testing.assert_close(image, ((rgb - mean) / std)[:, None, None].expand(3, 8, 8))
    augmented = next(iter(train.batches(6, shuffle=True, augment=True, resolution=8,
                                        num_workers=0)))
    assert augmented[0].shape == (6, 3, 8, 8)
    with pytest.raises(DataError, match="test split"):
        load_dataset(f"imagefolder:{tmp_path / 'train'}", "test")
    (tmp_path / "val" / "bird").mkdir()
    with pytest.raises(DataError, match="same class subfolders"):
        load_dataset(f"imagefolder:{tmp_path}", "test")


def test_load_train_val_rebuilds_the_recorded_split_and_detects_a_different_one():
    from nas.data import load_train_val
    data = load_dataset("fashion-mnist-small")
    _, val, record = train_val_split(data, 500, 3)
    _, val_again = load_train_val(record)
    assert torch.equal(val.images, val_again.images) and torch.equal(val.labels, val_again.labels)
    with pytest.raises(DataError, match="fingerprint"):
        load_train_val({**record, "val_indices_sha256": "0" * 64})
