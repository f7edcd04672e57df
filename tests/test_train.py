"""Supernet training: strategies, distillation, schedule, run directory, resume, DDP, CLI errors.

The end-to-end runs use a tiny space and a few hundred images of the embedded data set, with one
thread, so that the whole file runs in about a minute on two cores.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from nas import Supernet
from nas.checkpoint import load_checkpoint, supernet_from_checkpoint
from nas.cli import main
from nas.commands.train import load_run_data
from nas.config import from_mapping, parse_overrides, to_mapping
from nas.data import Batches, load_train_val
from nas.errors import ConfigError
from nas.evaluate import accuracy, calibrate_bn
from nas.space import SearchSpace
from nas.training import STRATEGIES, TrainConfig, make_strategy
from nas.training import loop
from nas.training.loop import step_rng
from nas.training.optim import CosineWarmup, build_optimizer, scaled_lr
from nas.training.strategies import LossConfig, forward_backward
from tests.conftest import load_space

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY_SPACE = """
name: tiny
cell:
  nodes: 3
  ops: [none, skip_connect, nor_conv_3x3]
stages:
  - {cells: 1, depth: [1], width: [4, 8], kernel: [1, 3]}
  - {cells: 2, depth: [1, 2], width: [8, 12], kernel: [3]}
resolution: [28]
"""
# 160 training images in batches of 16: 10 steps per epoch.
TINY = ["epochs=2", "train_subset=160", "val_size=40", "batch_size=16", "calib_images=32",
        "eval_batch_size=64", "threads=1", "log_every=3", "lr=0.5"]
STEPS_PER_EPOCH = 10
CHECKPOINT_KEYS = {"space", "model", "state_dict", "config", "data", "step", "epoch", "optimizer",
                   "scheduler", "rng", "metrics", "world_size", "format", "format_version"}


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return path


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return SearchSpace.from_yaml(tiny_path)


def train_args(space_path, out, *settings, extra=()):
    return ["train", "--space", str(space_path), "--data", "fashion-mnist-small", "--out",
            str(out), *extra, "--set", *TINY, *settings]


def run_cli(args, capsys):
    """Runs ``nas ARGS`` in this process; returns (exit code, stdout, stderr)."""
    try:
        code = main(args)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(err: str) -> str:
    """The one error line (tqdm may have drawn bars before it)."""
    lines = [l for l in err.replace("\r", "\n").splitlines() if "error" in l]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------- config


def test_config_ranges_name_the_key():
    for kwargs, message in [({"lr": 0.0}, "lr must be > 0"), ({"epochs": 0}, "epochs must be >= 1"),
                            ({"momentum": 1.0}, "momentum must be < 1"),
                            ({"val_size": 1.5}, "val_size as a fraction"),
                            ({"strategy": "greedy"}, "strategy must be one of sandwich, uniform, "
                                                     "progressive"),
                            ({"device": "tpu"}, "device must be one of auto, cpu, cuda"),
                            ({"strategy": "progressive", "num_random": 0},
                             "num_random must be >= 1 for strategy progressive")]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**kwargs)
    config = TrainConfig(val_size=0.1, strategy="uniform")
    assert from_mapping(TrainConfig, to_mapping(config)) == config
    with pytest.raises(ConfigError, match="unknown key 'lr_max'; allowed keys: amp, augment"):
        from_mapping(TrainConfig, {"lr_max": 1.0})


def test_shipped_recipes_are_valid():
    recipes = sorted((ROOT / "recipes").glob("*.yaml"))
    assert {p.stem for p in recipes} >= {"demo", "cifar10_gpu", "fashion_mnist_full"}
    for path in recipes:
        from_mapping(TrainConfig, yaml.safe_load(path.read_text()), source=str(path))


# ---------------------------------------------------------------- strategies and losses


def test_strategies_sample_the_documented_subnets(demo):
    largest, smallest = demo.max_arch(), demo.min_arch()
    sandwich = make_strategy("sandwich", num_random=3).sample(demo, step_rng(0, 5), 0.5)
    assert sandwich[:2] == [largest, smallest] and len(sandwich) == 5
    assert sandwich == make_strategy("sandwich", num_random=3).sample(demo, step_rng(0, 5), 0.5)
    assert sandwich != make_strategy("sandwich", num_random=3).sample(demo, step_rng(0, 6), 0.5)
    assert len(make_strategy("uniform").sample(demo, step_rng(0, 0), 0.0)) == 1

    progressive = make_strategy("progressive", num_random=2)
    elastic = load_space("nb201_elastic")  # elastic in kernel too
    largest = elastic.max_arch()
    assert progressive.sample(elastic, step_rng(0, 0), 0.1) == [largest]

    def samples(progress):
        archs = [a for s in range(30) for a in progressive.sample(elastic, step_rng(0, s), progress)]
        assert all(a == largest for a in archs[::3])  # the teacher leads every step
        return archs
    kernel, depth, width = samples(0.3), samples(0.6), samples(0.9)
    assert all(a.depth == largest.depth and a.width == largest.width for a in kernel)
    assert any(a.kernel != largest.kernel for a in kernel)
    assert all(a.width == largest.width for a in depth)
    assert any(a.depth != largest.depth for a in depth)
    assert any(a.width != largest.width for a in width)


def test_sandwich_students_learn_from_the_detached_teacher(tiny):
    torch.manual_seed(0)
    model = Supernet(tiny, num_classes=10, in_channels=1)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    archs = [tiny.max_arch(), tiny.min_arch()]
    cfg = LossConfig(label_smoothing=0.1, kd_weight=0.7, kd_temperature=2.0)
    losses = forward_backward(model, x, y, archs, distill=True, loss=cfg)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad(set_to_none=True)
    teacher, student = model(x, archs[0]), model(x, archs[1])
    teacher_loss = F.cross_entropy(teacher, y, label_smoothing=0.1)
    soft = F.softmax(teacher.detach() / 2.0, dim=1)
    kl = (soft * (soft.log() - F.log_softmax(student / 2.0, dim=1))).sum(1).mean() * 4.0
    student_loss = 0.7 * kl + 0.3 * F.cross_entropy(student, y, label_smoothing=0.1)
    (teacher_loss + student_loss).backward()

    torch.testing.assert_close(losses, torch.stack([teacher_loss, student_loss]).detach())
    assert grads.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad, msg=name)


def test_uniform_learns_from_labels(tiny):
    model = Supernet(tiny, num_classes=10, in_channels=1)
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    arch = tiny.min_arch()
    (loss,) = forward_backward(model, x, y, [arch], distill=False, loss=LossConfig(0.0))
    torch.testing.assert_close(loss, F.cross_entropy(model(x, arch), y).detach())


# ---------------------------------------------------------------- optimizer and schedule


def test_no_weight_decay_on_batchnorm_and_biases(tiny):
    model = Supernet(tiny, num_classes=10, in_channels=1)
    opt = build_optimizer(model, lr=0.1, momentum=0.9, weight_decay=1e-4)
    decay, no_decay = opt.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith(("conv.weight", "shortcut.weight", "linear.weight"))
               for p in decay["params"])
    assert all(names[id(p)].endswith(("bn.weight", "bn.bias", "linear.bias"))
               for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9


def test_cosine_schedule_with_warmup_and_linear_scaling():
    assert scaled_lr(0.1, batch_size=128, world_size=4, ref_batch_size=256) == pytest.approx(0.2)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    sched = CosineWarmup(opt, peak_lr=1.0, warmup_steps=4, total_steps=20)
    lrs = [sched.lr_at(s) for s in range(20)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0]) and lrs[4] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:])) and 0 < lrs[-1] < 0.01
    assert sched.apply(2) == opt.param_groups[0]["lr"] == pytest.approx(0.75)


# ---------------------------------------------------------------- end to end


def test_run_dir_is_self_describing_and_the_reported_top1_is_recomputable(tiny_path, tmp_path,
                                                                          capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(train_args(tiny_path, out, "checkpoint_every=4"), capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.yaml", "last.pt",
                                                     "metrics.jsonl"]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert set(ckpt) >= CHECKPOINT_KEYS
    assert ckpt["step"] == 2 * STEPS_PER_EPOCH and ckpt["epoch"] == 2
    config = from_mapping(TrainConfig, yaml.safe_load((out / "config.yaml").read_text()))
    assert config == from_mapping(TrainConfig, ckpt["config"])
    assert (config.checkpoint_every, config.lr, config.train_subset) == (4, 0.5, 160)
    assert ckpt["data"]["name"] == "fashion-mnist-small"
    assert ckpt["data"]["info"]["num_classes"] == 10 and ckpt["data"]["split"]["num_val"] == 40
    assert isinstance(ckpt["rng"]["python"], list) and ckpt["optimizer"]["state"]

    # The final line reports the largest subnet's top-1, and it is reproduced from the
    # checkpoint alone: rebuilt split, extracted subnet, BN recalibrated on the documented images.
    model = supernet_from_checkpoint(load_checkpoint(out / "last.pt"))
    train, val = load_train_val(ckpt["data"]["split"])
    train = train.subset(range(160))
    calib = train.subset(torch.randperm(160, generator=torch.Generator().manual_seed(0))[:32])
    subnet = model.extract(model.space.max_arch())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in training (threads=1): the same float sums
    try:
        calibrate_bn(subnet, Batches(calib, 64))
        top1, _ = accuracy(subnet, Batches(val, 64))
    finally:
        torch.set_num_threads(threads)
    assert len(val) == 40 and top1 == ckpt["metrics"]["top1_largest"]
    assert f"largest subnet {top1:.2%}" in stdout

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert [r["step"] for r in epochs] == [10, 20]
    assert [r["step"] for r in records if r["event"] == "step"] == [3, 6, 9, 12, 15, 18]
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["metrics"]["best_top1"] == max(r["top1_largest"] for r in epochs)
    assert best["step"] == best["metrics"]["best_step"]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_trains(name, tiny, tmp_path):
    config = from_mapping(TrainConfig, {**parse_overrides(TINY), "epochs": 1, "strategy": name,
                                        "num_random": 1})
    train, val, meta = load_run_data("fashion-mnist-small", config, root=None, download=False,
                                     expected_sha256=None)
    torch.manual_seed(0)
    init = Supernet(tiny, num_classes=10, in_channels=1).state_dict()
    result = loop.train_supernet(config, tiny, train, val, tmp_path, data_meta=meta,
                                 echo=lambda _: None)
    after = result.model.state_dict()
    assert all(torch.isfinite(v.float()).all() for v in after.values())
    assert not torch.equal(after["layers.stem.conv.weight"], init["layers.stem.conv.weight"])
    assert 0.0 <= result.top1_largest <= 1.0 and result.steps == STEPS_PER_EPOCH


def test_resume_after_sigkill_mid_epoch_is_bitwise_identical(tiny_path, tmp_path):
    nas = [str(BIN / "nas")]
    args = lambda out: train_args(tiny_path, out, "checkpoint_every=3")
    whole = subprocess.run(nas + args(tmp_path / "whole"), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen(nas + args(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    step = torch.load(out / "last.pt", weights_only=True)["step"]
    assert 0 < step < 2 * STEPS_PER_EPOCH and step % STEPS_PER_EPOCH != 0  # mid-epoch

    resumed = subprocess.run(nas + args(out) + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {step}" in resumed.stdout
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(out / "last.pt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for i, s in a["optimizer"]["state"].items():
        assert torch.equal(s["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
    assert a["metrics"] == b["metrics"] and a["step"] == b["step"]
    steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(l)["event"] == "step"]
    assert steps == sorted(set(steps))  # lines of the killed part are not repeated


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tiny_path, tmp_path,
                                                                         capsys, monkeypatch):
    calls = []
    real = loop.forward_backward

    def poisoned(*args, **kwargs):  # step 6 of 20 produces NaN
        calls.append(1)
        losses = real(*args, **kwargs)
        return losses * float("nan") if len(calls) == 6 else losses
    monkeypatch.setattr(loop, "forward_backward", poisoned)
    out = tmp_path / "run"
    code, _, err = run_cli(train_args(tiny_path, out, "checkpoint_every=4"), capsys)
    assert code == 2
    assert "step 6: the loss is nan" in error_line(err) and "last.pt keeps the last good" in err
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["step"] == 4
    assert all(torch.isfinite(v.float()).all() for v in ckpt["state_dict"].values())


def test_exploding_lr_stops_with_exit_code_2(tiny_path, tmp_path, capsys):
    code, _, err = run_cli(train_args(tiny_path, tmp_path / "run", "lr=1.0e+30"), capsys)
    line = error_line(err)
    assert code == 2 and ("is not finite" in line or "the loss is nan" in line)


def test_ddp_two_cpu_ranks_keep_identical_weights(tiny_path, tiny, tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(f"""
        import os, sys, torch
        from nas.commands.train import load_run_data
        from nas.space import SearchSpace
        from nas.training import TrainConfig, train_supernet
        config = TrainConfig(epochs=1, batch_size=8, train_subset=96, val_size=40, lr=0.5,
                             calib_images=16, eval_batch_size=64, threads=1, log_every=0)
        train, val, meta = load_run_data("fashion-mnist-small", config, root=None,
                                         download=False, expected_sha256=None)
        result = train_supernet(config, SearchSpace.from_yaml({str(tiny_path)!r}), train, val,
                                {str(tmp_path / 'run')!r}, data_meta=meta)
        rank = os.environ["RANK"]
        torch.save(dict(result.model.named_parameters()), {str(tmp_path)!r} + f"/rank{{rank}}.pt")
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2",
                           str(worker)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "global batch 16 (2 rank(s), cpu)" in proc.stdout
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    torch.manual_seed(0)
    init = dict(Supernet(tiny, num_classes=10, in_channels=1).named_parameters())
    assert rank0.keys() == rank1.keys() == init.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    moved = [n for n in rank0 if not torch.equal(rank0[n], init[n].detach())]
    assert len(moved) > len(rank0) // 2
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["step"] == 96 // 16


# ---------------------------------------------------------------- command-line errors


@pytest.mark.parametrize("extra, message", [
    (["--set", "nope=1"], "unknown key 'nope'; allowed keys: amp, augment"),
    (["--set", "lr=-1"], "lr must be > 0"),
    (["--set", "epochs=two"], "epochs: expected an integer"),
    (["--set", "lr"], "expected KEY=VALUE"),
    (["--strategy", "greedy"], "invalid choice: 'greedy'"),
    (["--epochs", "x"], "invalid int value: 'x'"),
    (["--data", "nope"], "unknown data set 'nope'"),
    (["--resume"], "there is no run to resume"),
    pytest.param(["--device", "cuda"], "torch sees no CUDA GPU", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="a GPU is present")),
])
def test_bad_flags_give_one_line_and_exit_code_2(tiny_path, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "--space", str(tiny_path), "--out", str(out), *extra],
                           capsys)
    assert code == 2 and message in error_line(err)
    assert not out.exists()


def test_recipe_errors_name_the_recipe(tiny_path, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("epochs: 2\nlearning_rate: 0.1\n")
    code, _, err = run_cli(["train", "--space", str(tiny_path), "--out", str(tmp_path / "run"),
                            "--config", str(recipe)], capsys)
    assert code == 2 and f"{recipe}: unknown key 'learning_rate'" in error_line(err)


def test_precedence_defaults_recipe_flags_set(tiny_path, tmp_path, capsys, monkeypatch):
    seen = {}

    def fake_train(config, *args, **kwargs):
        seen["config"] = config
        return loop.TrainResult(None, None, None, None, 0, tmp_path)
    monkeypatch.setattr("nas.commands.train.train_supernet", fake_train)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("epochs: 7\nseed: 3\nlr: 0.3\nmomentum: 0.8\n")
    code, _, err = run_cli(["train", "--space", str(tiny_path), "--out", str(tmp_path / "run"),
                            "--config", str(recipe), "--epochs", "5", "--seed", "4",
                            "--set", "seed=9", "val_size=100"], capsys)
    assert code == 0, err
    c = seen["config"]
    assert (c.epochs, c.seed, c.lr, c.momentum, c.batch_size) == (5, 9, 0.3, 0.8, 128)


def test_existing_run_dir_is_refused_and_left_alone(tiny_path, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = run_cli(train_args(tiny_path, out), capsys)
    assert code == 2 and "already holds files (notes.txt); pass --resume" in error_line(err)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"


def test_resume_refuses_a_changed_config(tiny_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(train_args(tiny_path, out, "epochs=1"), capsys)[0] == 0
    before = (out / "last.pt").read_bytes()
    code, _, err = run_cli(train_args(tiny_path, out, "epochs=1", "lr=0.1",
                                      extra=["--resume"]), capsys)
    assert code == 2 and "lr=0.1 differs from the run's lr=0.5" in error_line(err)
    assert (out / "last.pt").read_bytes() == before


def test_script_runs_the_same_command(tiny_path, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_supernet.py"),
                           "--space", str(tiny_path), "--out", str(tmp_path), "--resume"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "there is no run to resume" in proc.stderr
