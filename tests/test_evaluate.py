"""Evaluation: BN recalibration, top-1, the cached evaluator (memory, JSONL, ranks), Candidate,
``nas eval`` and its bad input."""
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from nas import SearchSpace, Supernet
from nas.candidate import Candidate, latency_key
from nas.checkpoint import save_checkpoint
from nas.cli import main
from nas.data import Batches, DatasetInfo, TensorData, load_dataset, train_val_split
from nas.errors import ArchError, CheckpointError, ConfigError
from nas.evaluate import EvalCache, SupernetEvaluator, accuracy, calibrate_bn
from nas.latency import make_latency_model
from tests.conftest import load_space, save_untrained_demo_checkpoint

BIN = Path(sys.executable).parent
TINY = {"name": "tiny", "cell": {"nodes": 3, "ops": ["none", "skip_connect", "nor_conv_1x1",
                                                     "nor_conv_3x3", "avg_pool_3x3"]},
        "stages": [{"cells": 2, "depth": [1, 2], "width": [4, 8], "kernel": [3, 5]},
                   {"cells": 1, "width": [8, 12]}],
        "resolution": [8, 16]}
DEMO_ARCH = ("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_1x1~0|skip_connect~1|"
             "nor_conv_3x3~2|;depth=1,2,1;width=6,8,24")


def synthetic(n: int, seed: int) -> TensorData:
    """n 1x8x8 images of 3 classes whose mean brightness depends on the class."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    images = (torch.rand(n, 1, 8, 8, generator=g) * 120 + labels.view(-1, 1, 1, 1) * 60).to(torch.uint8)
    info = DatasetInfo("synthetic", 3, 1, 8, (0.5,), (0.25,), ("a", "b", "c"))
    return TensorData(images, labels, info)


def tiny_supernet(space: SearchSpace) -> Supernet:
    torch.manual_seed(0)
    net = Supernet(space, num_classes=3, in_channels=1)
    for m in net.modules():  # BN statistics far from any data: recalibration must change them
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(5.0)
            m.running_var.fill_(9.0)
    return net


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster and immune to OpenMP spinning on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return SearchSpace.from_yaml(path)


@pytest.fixture
def make_evaluator(tiny, tmp_path):
    def make(fingerprint="ckpt-a", cache=True, batch_size=32, **kwargs):
        return SupernetEvaluator(tiny_supernet(tiny), synthetic(96, 1), synthetic(80, 2),
                                 fingerprint=fingerprint, batch_size=batch_size,
                                 cache_path=tmp_path / "cache.jsonl" if cache else None, **kwargs)
    return make


def _archs(space, n, seed=0):
    rng = random.Random(seed)
    return [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(n - 2)]


# ---------------------------------------------------------------------------------- calibrate_bn


def test_calibrate_bn_gives_the_exact_statistics_of_the_data():
    bn = nn.BatchNorm2d(3)
    x = torch.randn(16, 3, 5, 5) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1) + 4
    assert calibrate_bn(bn, [(x, None)]) == 16
    torch.testing.assert_close(bn.running_mean, x.mean((0, 2, 3)))
    torch.testing.assert_close(bn.running_var, x.var((0, 2, 3), unbiased=True))
    # Several equal batches: the cumulative average is the exact mean of all the data.
    calibrate_bn(bn, [(x[:8], None), (x[8:], None)])
    torch.testing.assert_close(bn.running_mean, x.mean((0, 2, 3)))


class _Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(2, momentum=0.3)
        self.head = nn.BatchNorm2d(2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("boom")
        return self.head(self.bn(x))


def test_calibrate_bn_restores_mode_and_momentum_after_an_error():
    model = _Boom().eval()
    model.head.train()  # a mixed state must come back exactly
    with pytest.raises(RuntimeError, match="boom"):
        calibrate_bn(model, [(torch.randn(4, 2, 3, 3), None)] * 3)
    assert model.bn.momentum == 0.3 and model.head.momentum == 0.1
    assert not model.training and not model.bn.training and model.head.training


def test_accuracy_is_top1_and_mean_cross_entropy():
    model = nn.Linear(4, 3)
    x = torch.randn(10, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    logits = model(x).detach()
    top1, loss = accuracy(model.train(), [(x[:6], y[:6]), (x[6:], y[6:])])
    assert top1 == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert loss == pytest.approx(float(nn.functional.cross_entropy(logits, y)), rel=1e-6)
    assert model.training
    with pytest.raises(ValueError, match="no batches"):
        accuracy(model, [])


# ---------------------------------------------------------------------------------- the evaluator


def test_evaluator_matches_extract_calibrate_score(tiny, make_evaluator):
    evaluator = make_evaluator(cache=False)
    archs = _archs(tiny, 5)
    results = evaluator.evaluate(archs)
    reference = tiny_supernet(tiny)
    for arch, metrics in zip(archs, results):
        sub = reference.extract(arch)
        calibrate_bn(sub, Batches(synthetic(96, 1), 32, resolution=arch.resolution))
        top1, loss = accuracy(sub, Batches(synthetic(80, 2), 32, resolution=arch.resolution))
        assert metrics["top1"] == top1 and metrics["loss"] == pytest.approx(loss)
        assert metrics["params"] == tiny.params(arch, in_channels=1, num_classes=3)
        assert metrics["flops"] == tiny.flops(arch, in_channels=1, num_classes=3)
        assert 0 <= metrics["top1"] <= 1
    # The supernet itself is left untouched (recalibration works on the extracted copy).
    for (name, a), b in zip(evaluator.supernet.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name


def test_prefix_of_the_validation_images(tiny, make_evaluator):
    evaluator = make_evaluator(cache=False)
    arch = tiny.max_arch()
    sub = tiny_supernet(tiny).extract(arch)
    calibrate_bn(sub, Batches(synthetic(96, 1), 32, resolution=arch.resolution))
    top1, _ = accuracy(sub, Batches(synthetic(80, 2).subset(range(40)), 32, resolution=arch.resolution))
    assert evaluator.evaluate([arch], num_val_images=40)[0]["top1"] == top1
    assert evaluator.evaluate([arch], num_val_images=10_000) == evaluator.evaluate([arch])
    assert evaluator.evaluated == 2  # 40 images, then all (10,000 is clamped to all 80)
    with pytest.raises(ConfigError, match="num_val_images"):
        evaluator.evaluate([arch], num_val_images=0)


def test_each_arch_is_evaluated_once_across_runs(tiny, make_evaluator, tmp_path):
    archs = _archs(tiny, 4)
    first = make_evaluator()
    results = first.evaluate(archs + archs[:2])  # duplicates too
    assert first.evaluated == 4 and results[4] == results[0]
    assert first.evaluate(archs) == results[:4] and first.evaluated == 4
    again = make_evaluator()  # a new run with the same cache file
    assert again.evaluate(archs) == results[:4] and again.evaluated == 0
    other = make_evaluator(fingerprint="ckpt-b")  # other weights: nothing reused
    other.evaluate(archs[:1])
    assert other.evaluated == 1
    batches = make_evaluator(batch_size=48)  # other BN calibration batches: nothing reused
    batches.evaluate(archs[:1])
    assert batches.evaluated == 1
    lines = [json.loads(l) for l in (tmp_path / "cache.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and lines[0]["checkpoint"] == "ckpt-a"
    assert lines[0]["calib_images"] == 96 and lines[0]["batch_size"] == 32


def test_cache_tolerates_a_torn_last_line(tiny, make_evaluator, tmp_path):
    archs = _archs(tiny, 3)
    make_evaluator().evaluate(archs[:2])
    path = tmp_path / "cache.jsonl"
    with open(path, "a") as f:
        f.write('{"v": 1, "checkpoint": "ckpt-a", "arch": "|nor_co')  # killed mid-write
    again = make_evaluator()
    assert again.cache.skipped == 1
    again.evaluate(archs)
    assert again.evaluated == 1
    cache = EvalCache(path, "ckpt-a")  # the next line starts on a line of its own
    assert len(cache.entries) == 3 and cache.skipped == 1


def test_arch_of_another_space_is_refused(make_evaluator):
    with pytest.raises(ArchError):
        make_evaluator(cache=False).evaluate([load_space("nb201").max_arch()])


def test_candidates_carry_latency_metrics(tiny, make_evaluator):
    flops = make_latency_model("flops", tiny, in_channels=1, num_classes=3)
    evaluator = make_evaluator(cache=False, latency_models=[flops])
    candidate = evaluator(tiny.max_arch())
    assert isinstance(candidate, Candidate) and candidate.arch == tiny.max_arch()
    assert candidate.latency_ms("flops") == flops.latency_ms(tiny.max_arch())
    assert set(candidate.metrics) == {"top1", "loss", "params", "flops", latency_key("flops")}


def test_candidate_json_round_trip(tiny):
    candidate = Candidate(tiny.max_arch(), {"top1": 0.5, "params": 1234.0, "latency_ms.cpu": 2.5})
    data = candidate.to_json()
    assert data == {"arch": str(tiny.max_arch()), "top1": 0.5, "params": 1234.0, "latency_ms.cpu": 2.5}
    assert Candidate.from_json(json.loads(json.dumps(data)), tiny) == candidate
    with pytest.raises(ArchError):
        Candidate.from_json({"arch": str(load_space("nb201").max_arch())}, tiny)
    with pytest.raises(ValueError, match="must be a number"):
        Candidate.from_json({"arch": str(tiny.max_arch()), "top1": "high"}, tiny)
    with pytest.raises(KeyError, match="no metric 'flops'"):
        candidate["flops"]


def test_sharded_over_two_ranks(tiny, tmp_path):
    """torchrun with 2 gloo ranks: each evaluates archs[rank::2]; everyone gets all, in order."""
    archs = _archs(tiny, 5)
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY))
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(f"""
        import json, os, sys
        import torch.distributed as dist
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from nas import SearchSpace
        from nas.evaluate import SupernetEvaluator
        from tests.test_evaluate import synthetic, tiny_supernet
        dist.init_process_group("gloo")
        space = SearchSpace.from_yaml({str(space_file)!r})
        archs = [space.parse(a) for a in {[str(a) for a in archs]!r}]
        ev = SupernetEvaluator(tiny_supernet(space), synthetic(96, 1), synthetic(80, 2),
                               fingerprint="ckpt-a", batch_size=32,
                               cache_path={str(tmp_path / "cache.jsonl")!r})
        results = ev.evaluate(archs)
        with open({str(tmp_path)!r} + f"/rank{{dist.get_rank()}}.json", "w") as f:
            json.dump({{"results": results, "evaluated": ev.evaluated}}, f)
        dist.destroy_process_group()
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", str(worker)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    single = SupernetEvaluator(tiny_supernet(tiny), synthetic(96, 1), synthetic(80, 2),
                               fingerprint="x", batch_size=32).evaluate(archs)
    for rank in ranks:
        assert [r["top1"] for r in rank["results"]] == [r["top1"] for r in single]
        assert [r["loss"] for r in rank["results"]] == pytest.approx([r["loss"] for r in single])
    assert [r["evaluated"] for r in ranks] == [3, 2]  # archs[0::2] and archs[1::2]
    lines = (tmp_path / "cache.jsonl").read_text().splitlines()
    assert sorted(json.loads(l)["arch"] for l in lines) == sorted(str(a) for a in archs)


# ---------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_untrained_demo_checkpoint(tmp_path_factory.mktemp("run") / "best.pt", 500)


def test_from_checkpoint_rebuilds_the_recorded_split(checkpoint, tmp_path):
    evaluator = SupernetEvaluator.from_checkpoint(checkpoint, calib_images=300,
                                                  cache_path=tmp_path / "c.jsonl")
    assert evaluator.num_calib_images == 300 and evaluator.num_val_images == 500
    data = load_dataset("fashion-mnist-small")
    train, val, _ = train_val_split(data, 500, 0)
    as_rows = lambda d: {bytes(img.numpy()) for img in d.images}  # noqa: E731
    assert as_rows(evaluator.val_data) == as_rows(val)  # the held-out images, reordered
    assert as_rows(evaluator.calib_data) <= as_rows(train)  # training images only
    metrics = evaluator.evaluate([evaluator.space.parse(DEMO_ARCH)], num_val_images=100)[0]
    assert 0 <= metrics["top1"] <= 1 and metrics["params"] > 0
    again = SupernetEvaluator.from_checkpoint(checkpoint, calib_images=300)
    assert torch.equal(again.calib_data.images, evaluator.calib_data.images)  # fixed images


def test_from_checkpoint_errors(checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        SupernetEvaluator.from_checkpoint(tmp_path / "missing.pt")
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt.pop("data")
    save_checkpoint(ckpt, tmp_path / "nodata.pt")
    with pytest.raises(CheckpointError, match="no data split record"):
        SupernetEvaluator.from_checkpoint(tmp_path / "nodata.pt")
    with pytest.raises(ConfigError, match="calib_images"):
        SupernetEvaluator.from_checkpoint(checkpoint, calib_images=10**7)
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["data"]["train_subset"] = 300  # fewer training images than the default 2,000
    save_checkpoint(ckpt, tmp_path / "small.pt")
    assert SupernetEvaluator.from_checkpoint(tmp_path / "small.pt").num_calib_images == 300


# ---------------------------------------------------------------------------------- nas eval


def test_nas_eval_prints_a_table(checkpoint, capsys):
    code = main(["eval", "--checkpoint", str(checkpoint), "--arch", DEMO_ARCH, "--device", "cpu",
                 "--calib-images", "200", "--num-val-images", "100", "--latency", "flops"])
    assert code == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert rows["arch"].endswith(DEMO_ARCH)
    space = load_space("demo")
    params = space.params(space.parse(DEMO_ARCH), in_channels=1, num_classes=10)
    assert f"{params:,} parameters" in rows["params"]
    assert "%" in rows["top1"] and "100 images" in rows["top1"]
    assert "FLOPs proxy" in rows["latency_ms.flops"] and "ms" in rows["latency_ms.flops"]


def test_nas_eval_json(checkpoint, capsys):
    assert main(["eval", "--checkpoint", str(checkpoint), "--arch", DEMO_ARCH, "--json",
                 "--calib-images", "200", "--num-val-images", "100"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["arch"] == DEMO_ARCH and set(record) == {"arch", "top1", "loss", "params", "flops"}


@pytest.fixture(scope="module")
def other_profile(tmp_path_factory):
    """A (tiny, untimed) profile of another space."""
    from nas.latency.target import PROFILE_FORMAT, PROFILE_VERSION
    path = tmp_path_factory.mktemp("latency") / "nb201.json"
    path.write_text(json.dumps({"format": PROFILE_FORMAT, "version": PROFILE_VERSION,
                                "space": {"name": "nb201", "config": load_space("nb201").to_config()},
                                "model": {"in_channels": 1, "num_classes": 10}, "device": "cpu",
                                "batch_size": 1, "entries": {}, "fit": {"coef": [0, 1, 0]}}))
    path.with_name("layers.json").write_text(json.dumps({"format": "ofa-nas-layer-list"}))
    return path


@pytest.mark.parametrize("extra, message", [
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--latency", "measured:npu"], "unknown device 'npu'"),
    (["--latency", "magic"], "unknown latency spec 'magic'"),
    (["--latency", "flops", "--latency", "measured:cpu@flops"], "two latency models are labelled"),
    (["--latency", "OTHER"], "does not match space 'demo'"),
    (["--latency", "WRONG_FORMAT"], "not a latency profile (format 'ofa-nas-layer-list'"),
    (["--arch", str(load_space("nb201").max_arch())], "missing depth, width"),
    (["--checkpoint", "missing.pt"], "checkpoint not found"),
])
def test_nas_eval_bad_input_is_one_line_and_exit_2(checkpoint, other_profile, capsys, extra, message):
    args = {"--checkpoint": str(checkpoint), "--arch": DEMO_ARCH}
    rest = []
    for flag, value in zip(extra[::2], extra[1::2]):  # replace --checkpoint/--arch, add others
        if value in ("OTHER", "WRONG_FORMAT"):
            value = str(other_profile if value == "OTHER" else other_profile.with_name("layers.json"))
        if flag in args:
            args[flag] = value
        else:
            rest += [flag, value]
    argv = ["eval", *[x for kv in args.items() for x in kv], *rest, "--calib-images", "50"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
