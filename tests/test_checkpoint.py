"""Checkpoints: atomic round trip, and refusal of pickle payloads, truncated files and other
format versions, by load_checkpoint and by ``nas train --resume`` (exit code 2)."""
import pathlib

import pytest
import torch

from nas import SearchSpace, Supernet
from nas.checkpoint import (FORMAT, FORMAT_VERSION, load_checkpoint, save_checkpoint,
                            supernet_from_checkpoint)
from nas.cli import main
from nas.errors import CheckpointError
from tests.conftest import SPACES_DIR


class Payload:
    """Unpickling this object would write a marker file (what a malicious checkpoint could do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return pathlib.Path.write_text, (pathlib.Path(self.marker), "code ran")


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    space = SearchSpace.from_yaml(SPACES_DIR / "demo.yaml")
    torch.manual_seed(0)
    net = Supernet(space, num_classes=10, in_channels=1)
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint({"space": space.to_config(), "model": {"num_classes": 10, "in_channels": 1},
                     "state_dict": net.state_dict(), "step": 3}, path)
    return path, net


def test_round_trip_rebuilds_the_supernet(valid):
    path, net = valid
    ckpt = load_checkpoint(path)
    assert ckpt["format"] == FORMAT and ckpt["format_version"] == FORMAT_VERSION
    rebuilt = supernet_from_checkpoint(ckpt)
    for (name, a), b in zip(net.state_dict().items(), rebuilt.state_dict().values()):
        assert torch.equal(a, b), name
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary file


def _pickle_payload(path, marker):
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "step": Payload(marker)}, path)


def _truncated(path, valid_path):
    data = valid_path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _other_version(path):
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION + 98, "step": 1}, path)


def _make(kind, path, valid_path, marker):
    if kind == "pickle":
        _pickle_payload(path, marker)
    elif kind == "truncated":
        _truncated(path, valid_path)
    else:
        _other_version(path)


MESSAGES = {"pickle": "refusing to load: the file holds objects other than tensors",
            "truncated": "truncated or corrupt checkpoint",
            "version": f"format version {FORMAT_VERSION + 98} is not supported"}


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_bad_checkpoints_raise_checkpoint_error(kind, valid, tmp_path):
    path, marker = tmp_path / "bad.pt", tmp_path / "marker.txt"
    _make(kind, path, valid[0], marker)
    with pytest.raises(CheckpointError, match=MESSAGES[kind]):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_nas_train_resume_refuses_bad_checkpoints(kind, valid, tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "marker.txt"
    run.mkdir()
    _make(kind, run / "last.pt", valid[0], marker)
    code = main(["train", "--space", str(SPACES_DIR / "demo.yaml"), "--out", str(run),
                 "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("nas train: error: ") and MESSAGES[kind] in err
    assert not marker.exists()


def test_resume_refuses_a_checkpoint_that_is_not_a_training_one(valid, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(valid[0].read_bytes())  # weights only: no optimizer, no step
    code = main(["train", "--out", str(run), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "not a training checkpoint (it lacks config, data" in err
