"""Bad input across the CLI: a corpus of malformed inputs (search spaces, arch strings, pick rules,
checkpoints, profiles, flags). Each gives exactly one line on stderr, ``nas CMD: error: ...``,
exit code 2 and no traceback; no output file that existed before is changed or removed."""
import json

import pytest
import torch
import yaml

from nas.cli import main
from nas.latency.target import PROFILE_FORMAT, PROFILE_VERSION
from tests.conftest import SPACES_DIR, load_space, save_untrained_demo_checkpoint

DEMO_ARCH = str(load_space("demo").max_arch())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Valid and broken inputs, and output files that must survive every failed command."""
    tmp = tmp_path_factory.mktemp("inputs")
    ckpt = save_untrained_demo_checkpoint(tmp / "best.pt", 300)
    raw = yaml.safe_load((SPACES_DIR / "demo.yaml").read_text())
    (tmp / "unknown_key.yaml").write_text(yaml.safe_dump({**raw, "colour": "red"}))
    (tmp / "bad_op.yaml").write_text(yaml.safe_dump({**raw, "cell": {"ops": ["conv_9x9"]}}))
    (tmp / "not_yaml.yaml").write_text("cell: [unclosed")
    (tmp / "truncated.pt").write_bytes(ckpt.read_bytes()[:1000])
    torch.save({"payload": object.__new__(_Evil)}, tmp / "pickle.pt")
    (tmp / "not_a_profile.json").write_text(json.dumps({"format": "something-else"}))
    nb201_profile = {"format": PROFILE_FORMAT, "version": PROFILE_VERSION,
                     "space": {"name": "nb201", "config": load_space("nb201").to_config()},
                     "model": {"in_channels": 1, "num_classes": 10}, "device": "cpu",
                     "batch_size": 1, "entries": {}, "fit": {"coef": [0, 1, 0]}}
    (tmp / "other_space_profile.json").write_text(json.dumps(nb201_profile))
    objectives = [{"metric": "top1", "maximize": True},
                  {"metric": "latency_ms.cpu", "maximize": False}]
    (tmp / "front.json").write_text(json.dumps({"objectives": objectives, "front": [
        {"arch": DEMO_ARCH, "top1": 0.9, "latency_ms.cpu": 9.0}]}))
    keep = tmp / "existing_export"  # a finished export that a failed command must not touch
    keep.mkdir()
    (keep / "metadata.json").write_text('{"arch": "kept"}')
    return tmp


class _Evil:
    """Unpickling this would run code: a checkpoint carrying it must be refused."""

    def __reduce__(self):
        return (print, ("code ran",))


CASES = [  # (argv with {tmp} for the inputs folder, text the error line must contain)
    # search spaces
    ("train --space {tmp}/unknown_key.yaml --out {tmp}/run", "unknown key 'colour'"),
    ("train --space {tmp}/bad_op.yaml --out {tmp}/run", "unknown op 'conv_9x9'"),
    ("train --space {tmp}/not_yaml.yaml --out {tmp}/run", "not valid YAML"),
    ("train --space {tmp}/missing.yaml --out {tmp}/run", "not found"),
    ("profile --space {tmp}/unknown_key.yaml --out {tmp}/p.json", "unknown key 'colour'"),
    # flags and config values
    ("train --space DEMO --epochs x --out {tmp}/run", "invalid int value: 'x'"),
    ("train --space DEMO --data nope --out {tmp}/run", "unknown data set 'nope'"),
    ("train --space DEMO --set colour=red --out {tmp}/run", "colour"),
    ("train --space DEMO --resume --out {tmp}/run", "there is no run to resume"),
    ("train --out {tmp}/run", "--space PATH is required"),
    ("search --table {tmp}/missing.csv --space " + str(SPACES_DIR / "nb201.yaml")
     + " --accuracy-column acc --out {tmp}/search", "missing.csv"),
    ("search --checkpoint {tmp}/best.pt --searcher magic --out {tmp}/search", "magic"),
    ("eval --checkpoint {tmp}/best.pt --arch ARCH --device tpu", "unknown device 'tpu'"),
    ("profile --space " + str(SPACES_DIR / "demo.yaml") + " --device tpu --out {tmp}/p.json",
     "tpu"),
    ("export --checkpoint {tmp}/best.pt --arch ARCH --out {tmp}/x --formats torch,tflite",
     "tflite"),
    # arch strings
    ("eval --checkpoint {tmp}/best.pt --arch |nor_conv_3x3~0|", "arch"),
    ("eval --checkpoint {tmp}/best.pt --arch " + str(load_space("nb201").max_arch()),
     "missing depth, width"),
    ("export --checkpoint {tmp}/best.pt --arch |conv_7x7~0|+|skip_connect~0|skip_connect~1|+|"
     "skip_connect~0|skip_connect~1|skip_connect~2|;depth=1,1,1;width=4,8,16 --out {tmp}/x",
     "conv_7x7"),
    # pick rules
    ("export --checkpoint {tmp}/best.pt --front {tmp}/front.json --pick best-ever --out {tmp}/x",
     "best-ever"),
    ("export --checkpoint {tmp}/best.pt --front {tmp}/front.json --pick most-accurate:latency<=fast"
     " --out {tmp}/x", "fast"),
    ("export --checkpoint {tmp}/best.pt --front {tmp}/front.json --pick fastest:top1>=0.99"
     " --out {tmp}/x", "no candidate of the front satisfies"),
    # checkpoints
    ("eval --checkpoint {tmp}/missing.pt --arch ARCH", "checkpoint not found"),
    ("eval --checkpoint {tmp}/truncated.pt --arch ARCH", "truncated.pt"),
    ("eval --checkpoint {tmp}/pickle.pt --arch ARCH", "pickle.pt"),
    ("finetune {tmp}/no_export", "no_export"),
    # profiles
    ("eval --checkpoint {tmp}/best.pt --arch ARCH --latency {tmp}/not_a_profile.json",
     "not_a_profile.json"),
    ("eval --checkpoint {tmp}/best.pt --arch ARCH --latency {tmp}/other_space_profile.json",
     "does not match space 'demo'"),
    # an existing output folder is not overwritten without --force
    ("export --checkpoint {tmp}/best.pt --arch ARCH --out {tmp}/existing_export", "--force"),
]


@pytest.mark.parametrize("command, message", CASES, ids=[f"{i:02d}" for i in range(len(CASES))])
def test_bad_input_gives_one_line_exit_2_and_keeps_existing_outputs(files, capsys, command,
                                                                     message):
    before = {p: p.read_bytes() for p in files.rglob("*") if p.is_file()}
    argv = [a.replace("{tmp}", str(files)) for a in command.split()]
    argv = [{"ARCH": DEMO_ARCH, "DEMO": str(SPACES_DIR / "demo.yaml")}.get(a, a) for a in argv]
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # flag errors: argparse exits (with code 2 and one line)
        code = exc.code
    assert code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"nas {argv[0]}: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out and "code ran" not in captured.out
    after = {p: p.read_bytes() for p in files.rglob("*") if p.is_file()}
    assert after == before  # nothing changed, removed or added


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 20
