"""Export: the folder, the program formats, load_subnet, pick rules, bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from nas.cli import main
from nas.data import load_dataset
from nas.errors import CheckpointError, ConfigError
from nas.export import ExportConfig, export_subnet, load_metadata, load_subnet, normalize_images
from nas.pick import parse_rule, pick
from tests.conftest import load_space, save_untrained_demo_checkpoint

ARCH = ("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_1x1~0|skip_connect~1|nor_conv_3x3~2|"
        ";depth=1,2,1;width=6,8,24")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_untrained_demo_checkpoint(tmp_path_factory.mktemp("run") / "best.pt", 500)


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "subnet"
    metadata = export_subnet(checkpoint, ARCH, out, config=ExportConfig(calib_images=256))
    return out, metadata


def test_export_folder_holds_weights_metadata_and_programs(exported):
    out, metadata = exported
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.onnx", "model.pt2", "state_dict.pt"]
    on_disk = load_metadata(out)
    assert on_disk["arch"] == ARCH and on_disk["input_size"] == [1, 28, 28]
    assert on_disk["class_names"][0] == "T-shirt/top"
    assert 0 <= on_disk["metrics"]["test_top1"] <= 1 and 0 <= on_disk["metrics"]["val_top1"] <= 1
    assert on_disk["metrics"]["params"] == sum(p.numel() for p in load_subnet(out).parameters())
    assert on_disk["verification"]["pt2_max_abs_diff"] <= 1e-4
    assert on_disk["verification"]["onnx_max_abs_diff"] <= 1e-4


def test_every_format_gives_the_same_predictions_on_real_images(exported):
    import onnxruntime
    out, metadata = exported
    test = load_dataset("fashion-mnist-small", "test")
    x = normalize_images(test.images[:37], metadata)  # an odd batch: the batch dimension is dynamic
    model = load_subnet(out)
    with torch.no_grad():
        reference = model(x)
        pt2 = torch.export.load(out / "model.pt2").module()(x)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {"images": x.numpy()})
    torch.testing.assert_close(pt2, reference, atol=1e-4, rtol=0)
    np.testing.assert_allclose(onnx_logits, reference.numpy(), atol=1e-4, rtol=0)
    assert torch.equal(pt2.argmax(1), reference.argmax(1))
    # The exported model recalibrated BN: its test top-1 is the one recorded.
    with torch.no_grad():
        full = normalize_images(test.images, metadata)
        top1 = float((model(full).argmax(1) == test.labels).float().mean())
    assert top1 == pytest.approx(metadata["metrics"]["test_top1"], abs=1e-6)


def test_load_subnet_does_not_build_a_supernet(exported, monkeypatch):
    import nas.supernet
    def refuse(*args, **kwargs):
        raise AssertionError("load_subnet built a supernet")
    monkeypatch.setattr(nas.supernet.Supernet, "__init__", refuse)
    load_subnet(exported[0])


def test_exported_model_loads_in_a_process_without_nas(exported):
    code = ("import sys, torch; sys.modules['nas'] = None; "
            "m = torch.export.load(sys.argv[1]).module(); print(tuple(m(torch.zeros(3, 1, 28, 28)).shape))")
    result = subprocess.run([sys.executable, "-c", code, str(exported[0] / "model.pt2")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(3, 10)"


@pytest.mark.parametrize("text, expected", [
    ("most-accurate", "b"), ("fastest", "a"), ("smallest", "a"),
    ("most-accurate:latency<=5ms", "a"), ("fastest:top1>=0.88", "b"),
    ("most-accurate:latency<6,params<=2000", "a"),
])
def test_pick_rules(text, expected):
    rows = [{"arch": "a", "top1": 0.85, "latency": 4.0, "params": 1000},
            {"arch": "b", "top1": 0.90, "latency": 9.0, "params": 5000}]
    assert pick(rows, parse_rule(text))["arch"] == expected


@pytest.mark.parametrize("text, message", [
    ("best", "unknown goal 'best'"), ("fastest:top1>=88", "top1 is a fraction"),
    ("fastest:speed<=3", "unknown metric 'speed'"), ("fastest:latency=5", "not METRIC OP VALUE"),
])
def test_bad_pick_rules(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_rule(text)


def test_infeasible_pick_says_what_the_front_spans():
    with pytest.raises(ConfigError, match=r"no candidate of the front satisfies .*latency 4..9"):
        pick([{"top1": 0.8, "latency": 4.0}, {"top1": 0.9, "latency": 9.0}], parse_rule("fastest:latency<=1"))


def test_export_from_a_front_with_a_pick_rule(checkpoint, tmp_path, capsys):
    front = tmp_path / "pareto_cpu.json"
    front.write_text(json.dumps({"device": "cpu", "front": [
        {"arch": ARCH, "top1": 0.8, "latency_ms.cpu": 1.0},
        {"arch": load_space("demo").max_arch().__str__(), "top1": 0.9, "latency_ms.cpu": 9.0}]}))
    out = tmp_path / "picked"
    code = main(["export", "--checkpoint", str(checkpoint), "--front", str(front),
                 "--pick", "most-accurate:latency<=5ms", "--out", str(out), "--formats", "torch",
                 "--calib-images", "128"])
    assert code == 0
    metadata = load_metadata(out)
    assert metadata["arch"] == ARCH and metadata["metrics"]["latency_ms.cpu"] == 1.0
    assert not (out / "model.onnx").exists()


@pytest.mark.parametrize("extra, message", [
    (["--arch", "|nope~0|"], "node groups"),
    (["--arch", ARCH, "--formats", "torch,tflite"], "unknown tflite"),
    (["--front", "missing.json", "--pick", "fastest"], "front file not found"),
    (["--arch", ARCH, "--pick", "fastest"], "--pick goes with --front"),
])
def test_bad_export_input_is_one_line_and_exit_2(checkpoint, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_existing_output_is_not_overwritten(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", "--checkpoint", str(checkpoint), "--arch", ARCH, "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_load_subnet_of_a_bad_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_subnet(tmp_path)
    (tmp_path / "metadata.json").write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="not the metadata of an exported subnet"):
        load_subnet(tmp_path)


@pytest.mark.slow
def test_finetune_reports_before_and_after_and_keeps_the_folder_valid(checkpoint, tmp_path, capsys):
    out = tmp_path / "ft"
    export_subnet(checkpoint, ARCH, out, config=ExportConfig(formats=("torch", "pt2"), calib_images=256))
    before = load_metadata(out)["metrics"]["test_top1"]
    weights_before = load_subnet(out).state_dict()
    assert main(["finetune", str(out), "--epochs", "1", "--lr", "0.05", "--batch-size", "512"]) == 0
    printed = capsys.readouterr().out
    metadata = load_metadata(out)
    assert metadata["finetune"]["before"]["test_top1"] == pytest.approx(before, abs=1e-6)
    after = metadata["finetune"]["after"]["test_top1"]
    assert metadata["metrics"]["test_top1"] == after and f"{100 * after:.2f}%" in printed
    model = load_subnet(out)
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, weights_before[k])]
    assert any(k.endswith("weight") and ".edges." in k for k in changed)
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.pt2", "state_dict.pt"]
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(torch.export.load(out / "model.pt2").module()(x), model(x), atol=1e-4, rtol=0)
