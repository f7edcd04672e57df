"""Searchers, objectives, tabular evaluator, halving, history/resume, CLI (issue 5).

Most tests use a synthetic evaluator (top-1 and latency as fixed functions of the cell) or a
synthetic table of all 15,625 NAS-Bench-201 cells, so they need no data; the checks against
the real NAS-Bench-201 table skip when ``<repo>/../shared/data/nb201`` is absent.
"""
from __future__ import annotations

import ast
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SPACES_DIR, load_space, save_untrained_demo_checkpoint
from nas.cli import main
from nas.errors import ConfigError, DataError, NASError
from nas.search import (
    Halving, InfeasibleError, KernelRidge, Oracle, Problem, SearchConfig, Table, TableEvaluator,
    load_history, parse_constraint, parse_objective, run_search, successive_halving,
)
from nas.space import SearchSpace

NB201 = str(SPACES_DIR / "nb201.yaml")
NB201_TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201.csv.gz"
OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
ACC = {"none": 0.0, "skip_connect": 0.3, "nor_conv_1x1": 0.6, "nor_conv_3x3": 1.0,
       "avg_pool_3x3": 0.2}
COST = {"none": 0.0, "skip_connect": 0.2, "nor_conv_1x1": 1.0, "nor_conv_3x3": 3.0,
        "avg_pool_3x3": 0.5}
EDGE_W = [1.0, 0.5, 0.8, 0.6, 0.7, 1.2]


def fake_top1(cell) -> float:
    """A smooth, non-additive accuracy: saturating in the ops' strength, plus a residual bonus."""
    s = sum(EDGE_W[e % 6] * ACC[op] for e, op in enumerate(cell))
    bonus = 0.05 if len(cell) > 3 and cell[3] == "skip_connect" else 0.0
    return round(0.3 + 0.55 * (1 - math.exp(-s / 3)) + bonus, 6)


def fake_latency(cell, scale: float) -> float:
    return round(scale * (0.5 + sum(COST[op] * (1 + 0.1 * e) for e, op in enumerate(cell))), 6)


class FakeEvaluator:
    """Evaluator interface with a call counter and an optional crash after ``fail_after`` archs."""

    def __init__(self, space: SearchSpace, fail_after: int | None = None,
                 num_val_images: int | None = None):
        self.space, self.fail_after, self.num_val_images = space, fail_after, num_val_images
        self.calls, self.seen, self.images = 0, [], 0

    def evaluate(self, archs, num_val_images=None):
        out = []
        for arch in archs:
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise RuntimeError("simulated crash")
            self.calls += 1
            self.seen.append(str(arch))
            n = num_val_images or self.num_val_images or 0
            self.images += n
            # fewer images: a noisier, deterministic estimate
            noise = 0.0 if not n or n == self.num_val_images else 0.02 * math.sin(len(str(arch)) * n)
            out.append({"top1": fake_top1(arch.cell) + noise,
                        "params": float(self.space.params(arch)), "flops": 1.0})
        return out


class FakeLatency:
    def __init__(self, device: str, scale: float):
        self.device, self.scale, self.calls = device, scale, 0

    def latency_ms(self, arch) -> float:
        self.calls += 1
        return fake_latency(arch.cell, self.scale)


@pytest.fixture(scope="module")
def nb201():
    return load_space("nb201")


@pytest.fixture(scope="module")
def synthetic_table(tmp_path_factory) -> Path:
    """All NAS-Bench-201 cells with a percent accuracy and two latency columns."""
    lines = ["index,arch,acc_pct,acc_frac,lat_ms_dev1,lat_ms_dev2"]
    for i, cell in enumerate(itertools.product(OPS, repeat=6)):
        text = (f"|{cell[0]}~0|+|{cell[1]}~0|{cell[2]}~1|+|{cell[3]}~0|{cell[4]}~1|{cell[5]}~2|")
        top1 = fake_top1(cell)
        lines.append(f"{i},{text},{100 * top1:.4f},{top1},{fake_latency(cell, 1.0)},"
                     f"{fake_latency(cell, 0.1)}")
    path = tmp_path_factory.mktemp("table") / "synthetic.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def fake_run(space_path=NB201, *, budget=40, seed=0, devices=("dev1",), out=None, evaluator=None,
             **kw):
    space = SearchSpace.from_yaml(space_path)
    evaluator = evaluator or FakeEvaluator(space)
    models = [FakeLatency(d, 1.0 + i) for i, d in enumerate(devices)]
    config = SearchConfig(space=str(space_path), table="synthetic", accuracy_column="acc",
                          budget=budget, seed=seed, **kw)
    return run_search(config, out=out, evaluator=evaluator, latency_models=models,
                      progress=False), evaluator, models


def history(result) -> list[tuple]:
    return [(str(c.arch), tuple(sorted(c.metrics.items()))) for c in result.candidates]


SEARCHERS = [
    pytest.param(dict(searcher="random"), id="random"),
    pytest.param(dict(objectives=("top1",)), id="regularized-evolution"),
    pytest.param(dict(objectives=("top1",), surrogate=False), id="regularized-evolution-plain"),
    pytest.param(dict(), id="nsga2"),
    pytest.param(dict(surrogate=False), id="nsga2-plain"),
]


# ------------------------------------------------------------------------ objectives, problem


def test_objectives_and_constraints_parse():
    assert parse_objective("latency:raspi4").key == "latency_ms.raspi4"
    assert parse_objective("top1").maximize and not parse_objective("params").maximize
    c = parse_constraint("latency:cpu<=5ms")
    assert (c.metric.key, c.op, c.bound) == ("latency_ms.cpu", "<=", 5.0)
    assert parse_constraint("params<=1.5M").bound == 1.5e6
    assert parse_constraint("params <= 1e6").bound == 1e6
    assert parse_constraint("top1>=80%").bound == pytest.approx(0.8)
    assert parse_constraint("top1>=0.8").satisfied({"top1": 0.81})
    assert parse_constraint("latency:cpu<=5").violation({"latency_ms.cpu": 6.0}) == pytest.approx(0.2)
    for bad in ["latency:cpu<5ms", "params=<3", "speed<=3", "top1>=80", "latency:cpu<=5s",
                "params<=abc", ""]:
        with pytest.raises(ConfigError):
            parse_constraint(bad)
    with pytest.raises(ConfigError):
        parse_objective("accuracy")


def test_constrained_domination_ranks_feasible_first():
    problem = Problem.parse(["top1", "latency:d"], ["latency:d<=10"])
    metrics = [{"top1": 0.9, "latency_ms.d": 20.0},   # infeasible, violation 1.0
               {"top1": 0.5, "latency_ms.d": 5.0},    # feasible front
               {"top1": 0.7, "latency_ms.d": 9.0},    # feasible front
               {"top1": 0.4, "latency_ms.d": 9.5},    # feasible, dominated
               {"top1": 0.95, "latency_ms.d": 12.0}]  # infeasible, violation 0.2
    assert problem.fronts(metrics) == [[1, 2], [3], [4], [0]]
    assert problem.order(metrics)[:2] in ([1, 2], [2, 1])


# ------------------------------------------------------------------------ searchers


@pytest.mark.parametrize("options", SEARCHERS)
def test_same_seed_same_history_no_duplicates_budget(options):
    a, ev, models = fake_run(seed=3, **options)
    b, _, _ = fake_run(seed=3, **options)
    c, _, _ = fake_run(seed=4, **options)
    assert history(a) == history(b)
    assert history(a) != history(c)
    archs = [str(x.arch) for x in a.candidates]
    assert len(archs) == 40 and len(set(archs)) == 40  # budget used, never twice
    assert ev.calls == 40 and models[0].calls == 40


@pytest.mark.parametrize("options", SEARCHERS)
def test_small_space_is_exhausted_and_the_search_ends(tmp_path, options):
    space = tmp_path / "tiny.yaml"
    space.write_text("cell: {nodes: 3, ops: [none, skip_connect, nor_conv_3x3]}\n"
                     "stages: [{cells: 1, width: [8]}]\n")
    result, ev, _ = fake_run(space, budget=100, **options)
    archs = [str(c.arch) for c in result.candidates]
    assert len(archs) == 27 == len(set(archs))  # 3 ops ^ 3 edges, each once
    assert result.stopped == "space exhausted" and ev.calls == 27


def test_oracle_refuses_repeated_queries(nb201):
    import random

    oracle = Oracle(nb201, Problem.parse(["top1"]),
                    lambda archs, order: FakeEvaluator(nb201).evaluate(archs), budget=5)
    arch = nb201.sample(random.Random(0))
    oracle.evaluate([arch])
    with pytest.raises(ValueError, match="already queried"):
        oracle.evaluate([arch])
    assert len(oracle.evaluate([nb201.sample(random.Random(s)) for s in range(1, 20)])) == 4
    assert oracle.remaining == 0


def test_evolution_beats_random_on_the_synthetic_problem():
    def best(options):
        return [fake_run(seed=s, budget=60, **options)[0].best.metrics["top1"] for s in range(5)]
    evo, rnd = best(dict(objectives=("top1",))), best(dict(searcher="random"))
    assert sum(evo) > sum(rnd)
    assert max(evo) == pytest.approx(max(fake_top1(c) for c in itertools.product(OPS, repeat=6)))


def test_constrained_evolution_returns_a_feasible_best():
    result, _, _ = fake_run(budget=60, objectives=("top1",), constraints=("latency:dev1<=8ms",))
    best = result.best
    assert best.metrics["latency_ms.dev1"] <= 8.0
    feasible = [c for c in result.candidates if c.metrics["latency_ms.dev1"] <= 8.0]
    assert best.metrics["top1"] == max(c.metrics["top1"] for c in feasible)
    assert best.metrics["top1"] < max(c.metrics["top1"] for c in result.candidates)  # it binds


@pytest.mark.parametrize("objectives", [("top1",), ("top1", "params")])
def test_infeasible_budget_is_reported_not_looped(objectives):
    with pytest.raises(InfeasibleError, match=r"latency:dev1<=0.01ms") as info:
        fake_run(budget=500, objectives=objectives, constraints=("latency:dev1<=0.01ms",))
    assert isinstance(info.value, NASError)
    spent = int(re.search(r"after (\d+) evaluations", str(info.value)).group(1))
    # gave up after the patience (30) plus one batch, or after NSGA-II's initial sample (40)
    assert 30 <= spent <= 40


def test_one_accuracy_evaluation_per_arch_with_several_devices():
    result, ev, models = fake_run(budget=30, devices=("dev1", "dev2", "dev3"))
    assert [o.name for o in result.problem.objectives] == \
        ["top1", "latency:dev1", "latency:dev2", "latency:dev3"]
    assert ev.calls == 30 and [m.calls for m in models] == [30, 30, 30]
    assert set(result.fronts) == {"dev1", "dev2", "dev3"}


class CheapLatency(FakeLatency):
    cheap = True  # a lookup: searchers may ask it about archs they only consider


def test_cheap_latency_models_give_exact_costs_to_the_pre_selection(monkeypatch):
    from nas.search import evolution

    seen = []
    preselect = evolution.NSGA2._preselect

    def spy(self, oracle, proposals, pred, n):
        seen.append((proposals, {k: (list(m), list(s)) for k, (m, s) in pred.items()}))
        return preselect(self, oracle, proposals, pred, n)

    monkeypatch.setattr(evolution.NSGA2, "_preselect", spy)
    space = SearchSpace.from_yaml(NB201)
    cheap, measured = CheapLatency("dev1", 1.0), FakeLatency("dev2", 2.0)
    config = SearchConfig(space=str(NB201), table="synthetic", accuracy_column="acc", budget=40,
                          seed=0)
    result = run_search(config, evaluator=FakeEvaluator(space), latency_models=[cheap, measured],
                        progress=False)
    assert len(result.candidates) == 40 and seen
    assert measured.calls == 40  # only the evaluated archs: timing costs
    assert cheap.calls > 40  # also every proposal the surrogate ranked
    for proposals, pred in seen:
        means, stds = pred["latency_ms.dev1"]
        assert means == [fake_latency(a.cell, 1.0) for a in proposals] and not any(stds)
        assert any(pred["latency_ms.dev2"][1])  # the surrogate's guess, with its uncertainty


def test_default_objectives():
    assert [o.name for o in fake_run(budget=10, devices=())[0].problem.objectives] == ["top1", "params"]
    constrained = fake_run(budget=10, constraints=("latency:dev1<=9",))[0]
    assert [o.name for o in constrained.problem.objectives] == ["top1"]
    with pytest.raises(ConfigError, match="no latency model for device 'cpu'"):
        fake_run(budget=10, objectives=("top1", "latency:cpu"))
    with pytest.raises(ConfigError, match="does not apply"):
        fake_run(budget=10, searcher="random", population=5)


def test_kernel_ridge_picks_a_linear_model_for_a_linear_target():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(60, 12)).astype(float)
    w = rng.normal(size=12)
    model = KernelRidge().fit(x[:40], x[:40] @ w)
    assert model.kernel in ("linear", "quadratic")
    mean, std = model.predict(x[40:])
    assert np.corrcoef(mean, x[40:] @ w)[0, 1] > 0.95
    assert (std >= 0).all()
    again = KernelRidge().fit(x[:40], x[:40] @ w).predict(x[40:])[0]
    assert (again == mean).all()  # deterministic


def test_searcher_modules_do_not_import_torch():
    for path in list((ROOT / "nas" / "search").glob("*.py")) + [ROOT / "nas" / "pareto.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            top_level = node.col_offset == 0
            if top_level:
                assert not any(n.split(".")[0] == "torch" for n in names), path.name


# ------------------------------------------------------------------------ successive halving


def test_successive_halving_promotes_the_best_and_records_images(nb201):
    import random

    assert Halving(3, 3).images(900) == [100, 300, 900]
    archs = [nb201.sample(random.Random(s)) for s in range(9)]
    ev = FakeEvaluator(nb201, num_val_images=900)
    order = Problem.parse(["top1"]).order
    out = successive_halving(archs, lambda a, n: ev.evaluate(a, n), order, 900, Halving(3, 3))
    assert [m["val_images"] for m in out].count(900) == 1
    assert [m["val_images"] for m in out].count(300) == 2
    assert [m["val_images"] for m in out].count(100) == 6
    assert ev.images == 9 * 100 + 3 * 300 + 1 * 900 == sum(m["images"] for m in out)
    full = max(out, key=lambda m: m["val_images"])
    assert full["top1"] == max(fake_top1(a.cell) for a in archs)  # the best went through
    assert full["images"] == 100 + 300 + 900


# ------------------------------------------------------------------------ tabular evaluator


def test_table_join_units_and_devices(nb201, synthetic_table):
    ev = TableEvaluator(synthetic_table, nb201, "acc_pct", latency_columns=["lat_ms_dev1"])
    arch = nb201.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|"
                       "avg_pool_3x3~2|")
    (m,) = ev.evaluate([arch])
    assert ev.percent and m["top1"] == pytest.approx(fake_top1(arch.cell), abs=1e-6)
    assert m["params"] == nb201.params(arch)
    assert ev.latency_models[0].device == "dev1"
    assert ev.latency_models[0].latency_ms(arch) == fake_latency(arch.cell, 1.0)
    frac = TableEvaluator(synthetic_table, nb201, "acc_frac")
    assert not frac.percent and frac.evaluate([arch])[0]["top1"] == fake_top1(arch.cell)


def test_table_errors_name_what_exists(nb201, synthetic_table, tmp_path):
    with pytest.raises(ConfigError, match="available columns: index, acc_pct, acc_frac"):
        TableEvaluator(synthetic_table, nb201, "c10_val_12ep")
    with pytest.raises(DataError, match="not found"):
        Table(tmp_path / "missing.csv")
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join(synthetic_table.read_text().splitlines()[:100]) + "\n")
    ev = TableEvaluator(partial, nb201, "acc_pct")
    missing = nb201.parse("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert str(missing) not in Table(partial).arch_strings
    with pytest.raises(DataError, match="is not in the table"):
        ev.evaluate([missing])


@pytest.mark.skipif(not NB201_TABLE.is_file(), reason="NAS-Bench-201 table not present")
def test_nb201_table_known_values(nb201):
    ev = TableEvaluator(NB201_TABLE, nb201, "c10_test_200ep")
    table = ev.table
    best = table.arch_strings[max(range(len(table)), key=lambda i: table.column("c10_test_200ep")[i])]
    resnet = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    skips = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    tops = [m["top1"] for m in ev.evaluate([nb201.parse(best), nb201.parse(resnet), nb201.parse(skips)])]
    assert tops == pytest.approx([0.9437, 0.9391, 0.5430], abs=5e-5)
    assert table.column("index")[table.arch_strings.index(best)] == 6111


# ------------------------------------------------------------------------ CLI and outputs


def cli_args(table, out, *extra):
    return ["search", "--space", NB201, "--table", str(table), "--accuracy-column", "acc_pct",
            "--latency-column", "lat_ms_dev1", "--latency-column", "lat_ms_dev2", "--budget", "40",
            "--seed", "1", "--out", str(out), "--quiet", *extra]


def test_cli_writes_history_fronts_plots_and_logs(synthetic_table, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(cli_args(synthetic_table, out)) == 0
    printed = capsys.readouterr().out
    assert "Pareto front: top-1 vs latency on dev1 (ms)" in printed
    records = [json.loads(l) for l in (out / "history.jsonl").read_text().splitlines()]
    assert len(records) == 40
    for rec in records:
        assert {"arch", "top1", "latency_ms.dev1", "latency_ms.dev2", "params"} <= set(rec)
    for device in ("dev1", "dev2"):
        front = json.loads((out / f"pareto_{device}.json").read_text())["front"]
        key = f"latency_ms.{device}"
        points = [(-r["top1"], r[key]) for r in records]
        assert len(front) >= 2
        for member in front:  # nothing evaluated dominates a front member
            assert not any(p[0] <= -member["top1"] and p[1] <= member[key] and p != (-member["top1"], member[key])
                           for p in points)
        assert (out / f"pareto_{device}.csv").read_text().startswith(f"arch,top1,{key}")
        assert (out / f"pareto_{device}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = [json.loads(l) for l in (out / "search_log.jsonl").read_text().splitlines()]
    hv = [entry["hypervolume"]["dev1"] for entry in log]
    assert len(log) >= 2 and hv == sorted(hv) and hv[-1] > hv[0]
    config = (out / "config.yaml").read_text()
    assert "population: 40" in config and "ehvi_share: 0.6" in config and "seed: 1" in config


@pytest.mark.parametrize("extra, message", [
    (["--searcher", "annealing"], "unknown searcher 'annealing'"),
    (["--constraint", "latency:dev1<5ms"], "bad constraint"),
    (["--accuracy-column", "top1"], "available columns: index, acc_pct"),
    (["--objective", "latency:cpu"], "no latency model for device 'cpu'"),
    (["--set", "sample=3", "--searcher", "random"], "does not apply"),
    (["--constraint", "latency:dev1<=0.001ms", "--objective", "top1"], "look infeasible"),
])
def test_cli_bad_input_is_one_line_and_exit_2(synthetic_table, tmp_path, capsys, extra, message):
    assert main(cli_args(synthetic_table, tmp_path / "run", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_table_and_checkpoint_are_exclusive(synthetic_table, tmp_path, capsys):
    assert main(cli_args(synthetic_table, tmp_path / "r", "--checkpoint", "x.pt")) == 2
    assert "exactly one of checkpoint" in capsys.readouterr().err


# ------------------------------------------------------------------------ resume


def test_resume_after_a_crash_replays_without_re_evaluating(tmp_path):
    kw = dict(budget=60, devices=("dev1", "dev2"))
    full, _, _ = fake_run(out=tmp_path / "full", **kw)
    space = load_space("nb201")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fake_run(out=tmp_path / "run", evaluator=FakeEvaluator(space, fail_after=37), **kw)
    done = load_history(tmp_path / "run" / "history.jsonl")
    replayed = sum(len(b) for b in done)
    assert 20 <= replayed <= 37
    again = FakeEvaluator(space)
    resumed, _, models = fake_run(out=tmp_path / "run", evaluator=again, **kw)
    assert history(resumed) == history(full)
    assert resumed.replayed == replayed and again.calls == 60 - replayed
    assert not set(again.seen) & {r["arch"] for b in done for r in b}  # nothing re-evaluated
    assert models[0].calls == 60 - replayed
    for name in ("history.jsonl", "pareto_dev1.json", "pareto_dev2.csv", "summary.json"):
        assert (tmp_path / "run" / name).read_text() == (tmp_path / "full" / name).read_text() \
            or name == "summary.json"
    assert resumed.fronts == full.fronts


def test_restart_with_other_arguments_is_refused(synthetic_table, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(cli_args(synthetic_table, out)) == 0
    capsys.readouterr()
    assert main(cli_args(synthetic_table, out).__add__(["--budget", "50"])) == 2
    assert "budget: 40 -> 50" in capsys.readouterr().err
    assert main(cli_args(synthetic_table, out)) == 0  # same arguments: resumes (nothing to do)
    assert "40 from the history" in capsys.readouterr().out


_SLOW_SEARCH = """
import sys, time
import nas.search.table as table
slow = table.TableEvaluator.evaluate
def evaluate(self, archs, num_val_images=None):
    time.sleep(0.02 * len(archs))
    return slow(self, archs, num_val_images)
table.TableEvaluator.evaluate = evaluate
from nas.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_resume_after_sigkill_of_a_table_search(synthetic_table, tmp_path):
    args = cli_args(synthetic_table, tmp_path / "run", "--objective", "top1",
                    "--objective", "latency:dev1")
    args[args.index("--budget") + 1] = "120"
    script = tmp_path / "slow_search.py"
    script.write_text(_SLOW_SEARCH)
    proc = subprocess.Popen([sys.executable, str(script), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hist = tmp_path / "run" / "history.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if hist.is_file() and len(hist.read_text().splitlines()) >= 40:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the search ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(hist.read_text().splitlines())
    assert 40 <= killed_at < 120
    assert main(args) == 0  # resume to the end
    ref = cli_args(synthetic_table, tmp_path / "ref", "--objective", "top1",
                   "--objective", "latency:dev1")
    ref[ref.index("--budget") + 1] = "120"
    assert main(ref) == 0
    for name in ("history.jsonl", "pareto_dev1.json", "pareto_dev1.csv"):
        assert (tmp_path / "run" / name).read_text() == (tmp_path / "ref" / name).read_text()


# ------------------------------------------------------------------------ torchrun


@pytest.fixture(scope="module")
def demo_checkpoint(tmp_path_factory) -> Path:
    return save_untrained_demo_checkpoint(tmp_path_factory.mktemp("supernet") / "best.pt", 270)


def test_supernet_search_with_halving_and_resume(demo_checkpoint, tmp_path):
    """A checkpoint search (injected latency model) records images; a restart replays."""
    from nas.evaluate import SupernetEvaluator

    config = SearchConfig(checkpoint=str(demo_checkpoint), latency=("flops",), budget=9,
                          population=3, offspring=3, calib_images=64)
    first = run_search(config, out=tmp_path / "run", progress=False)
    recs = [json.loads(l) for l in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert len(recs) == 9 and all(0 <= r["top1"] <= 1 for r in recs)
    assert {r["val_images"] for r in recs} <= {30, 90, 270} and max(r["val_images"] for r in recs) == 270
    assert sum(r["images"] for r in recs) == first.images < 9 * 270  # halving saved images
    assert all(c.metrics["val_images"] == 270 for f in first.fronts.values() for c in f)
    ev = SupernetEvaluator.from_checkpoint(demo_checkpoint, calib_images=64)
    again = run_search(config, out=tmp_path / "run", evaluator=ev, progress=False)
    assert ev.evaluated == 0 and again.replayed == 9
    assert history(again) == history(first)


@pytest.mark.slow
def test_torchrun_two_processes_give_the_history_of_one(demo_checkpoint, tmp_path):
    def launch(nproc: int, out: Path) -> list[dict]:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", str(ROOT / "scripts" / "search.py"),
               "--checkpoint", str(demo_checkpoint), "--latency", "flops", "--budget", "12",
               "--set", "population=4", "--set", "offspring=4", "--calib-images", "64",
               "--seed", "5", "--out", str(out), "--quiet"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [json.loads(l) for l in (out / "history.jsonl").read_text().splitlines()]

    one = launch(1, tmp_path / "one")
    two = launch(2, tmp_path / "two")
    assert len(one) == 12
    assert [(r["arch"], r["top1"], r["val_images"], r["latency_ms.flops"]) for r in two] == \
        [(r["arch"], r["top1"], r["val_images"], r["latency_ms.flops"]) for r in one]
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    assert (tmp_path / "one" / "pareto_flops.json").read_text() == \
        (tmp_path / "two" / "pareto_flops.json").read_text()


def test_supernet_searches_start_from_both_ends_of_the_space(nb201):
    """With seed_extremes (set for checkpoint searches) the first two queries are the smallest
    and the largest arch; a table search starts from uniform samples only."""
    import random

    from nas.search import NSGA2
    from nas.search.config import SearchConfig

    def first_queries(searcher):
        evaluator = FakeEvaluator(nb201)
        oracle = Oracle(nb201, Problem.parse(["top1", "params"]),
                        lambda archs, order: evaluator.evaluate(archs), budget=6)
        searcher.run(oracle, random.Random(0))
        return [nb201.parse(a) for a in evaluator.seen[:2]]

    ends = [nb201.min_arch(), nb201.max_arch()]
    assert first_queries(NSGA2(population=4, seed_extremes=True)) == ends
    assert first_queries(NSGA2(population=4)) != ends
    assert SearchConfig(checkpoint="best.pt").searcher_options().get("seed_extremes") is True
