"""`nas demo` end to end, on a shortened recipe: every stage runs, the export honours the latency
budget, the three exported formats agree, and a second run redoes nothing."""
import json

import numpy as np
import pytest
import torch
import yaml

from nas.cli import main
from nas.data import load_dataset
from nas.export import load_metadata, load_subnet, normalize_images
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    recipe = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
    recipe.update(epochs=1, train_subset=768, val_size=300, calib_images=256, threads=1)
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp / "demo"
    argv = ["demo", "--out", str(out), "--recipe", str(tmp / "recipe.yaml"), "--budget", "16"]
    assert main(argv) == 0
    return out, argv


def test_demo_writes_every_stage_and_exports_within_the_budget(demo_run, capsys):
    out, _ = demo_run
    for path in ("supernet/best.pt", "latency_cpu.json", "search/history.jsonl",
                 "search/pareto_cpu.png", "export/model.onnx"):
        assert (out / path).is_file(), path
    history = [json.loads(line) for line in (out / "search" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 16 and len({row["arch"] for row in history}) == 16
    front = json.loads((out / "search" / "pareto_cpu.json").read_text())["front"]
    latencies = [row["latency_ms.cpu"] for row in front]
    budget = max(min(latencies), 0.5 * max(latencies))
    metadata = load_metadata(out / "export")
    feasible = [row for row in front if row["latency_ms.cpu"] <= budget]
    assert metadata["arch"] == max(feasible, key=lambda row: row["top1"])["arch"]


def test_demo_export_loads_three_ways_with_the_same_predictions(demo_run):
    import onnxruntime
    out, _ = demo_run
    export = out / "export"
    metadata = load_metadata(export)
    x = normalize_images(load_dataset("fashion-mnist-small", "test").images[:64], metadata)
    with torch.no_grad():
        reference = load_subnet(export)(x)
        pt2 = torch.export.load(export / "model.pt2").module()(x)
    session = onnxruntime.InferenceSession(str(export / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {"images": x.numpy()})
    assert torch.equal(pt2.argmax(1), reference.argmax(1))
    np.testing.assert_array_equal(onnx_logits.argmax(1), reference.argmax(1).numpy())
    np.testing.assert_allclose(onnx_logits, reference.numpy(), atol=1e-4, rtol=0)


def test_demo_run_again_redoes_no_stage(demo_run, capsys):
    out, argv = demo_run
    history = (out / "search" / "history.jsonl").read_text()
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "latency_cpu.json exists" in printed and "16 from the history" in printed
    assert (out / "search" / "history.jsonl").read_text() == history
    assert "== summary" in printed and "test top-1" in printed
