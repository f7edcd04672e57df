"""Latency models: the lookup table's layer enumeration and modules, profiles, the device-side
script, per-arch tables, the FLOPs proxy, statistics and bad input. No assertion on wall time."""
import csv
import dataclasses
import gzip
import itertools
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from nas import SearchSpace, build_subnet, ops
from nas.cli import main
from nas.errors import ArchError, CheckpointError, ConfigError
from nas.latency import (
    FlopsLatency, LatencyModel, LookupTableLatency, MeasuredLatency, TableLatency, build_profile,
    export_layer_list, fidelity, kendall_tau, layer_configs, load_profile, make_latency_model,
)
from nas.latency import target
from nas.latency.lut import NodeSum, covering_archs, item_key, item_module, timed_items
from nas.latency.specs import module_spec
from tests.conftest import ROOT, load_space

# Every registered cell op, so that a new op is enumerated, described and built by the tests.
TINY = {"name": "tiny", "cell": {"nodes": 3, "ops": ops.cell_ops()},
        "stages": [{"cells": 2, "depth": [1, 2], "width": [4, 8], "kernel": [3, 5]},
                   {"cells": 1, "width": [8, 12]}],
        "resolution": [8, 16]}
FAST = {"warmup": 1, "repeats": 2, "min_time_ms": 0.2}  # structure only, not fidelity
NB201_CSV = ROOT.parent / "shared" / "data" / "nb201" / "nb201.csv.gz"


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


@pytest.fixture(scope="module")
def tiny_profile(tiny):
    return build_profile(tiny, in_channels=1, num_classes=3, threads=1, calibrate=8, validate=3,
                         **FAST)


# ---------------------------------------------------------------------------------- statistics


def test_kendall_tau_known_values():
    # scipy.stats.kendalltau's documented example (tau-b with ties).
    assert kendall_tau([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]) == pytest.approx(-0.47140452079103173)
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [3, 1, 2]) == pytest.approx(-1 / 3)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


def test_fidelity_figures():
    f = fidelity([10.0, 20.0, 40.0, 50.0], [10.5, 25.0, 39.0, 50.0])
    assert f["mape"] == pytest.approx((5 + 25 + 2.5 + 0) / 4)
    assert f["within_10pct"] == 0.75
    assert f["max_ape"] == pytest.approx(25.0)
    assert f["kendall_tau"] == 1.0


@pytest.mark.parametrize("statistic, expected", [("median", 2.0), ("min", 1.0)])
def test_time_calls_warms_up_then_takes_the_statistic_of_interleaved_rounds(monkeypatch, statistic,
                                                                             expected):
    order = []
    timings = iter([0.010, 0.010] + [0.003, 0.004, 0.001, 0.006, 0.002, 0.005])  # seconds

    def fake_timed(fn, number, sync, clock):
        fn()
        return next(timings)

    monkeypatch.setattr(target, "_timed", fake_timed)
    fns = [lambda: order.append("a"), lambda: order.append("b")]
    result = target.time_calls(fns, torch.device("cpu"), warmup=2, repeats=3, min_time_ms=5,
                               statistic=statistic)
    assert order == ["a", "a", "a", "b", "b", "b"] + ["a", "b"] * 3  # warm-up, trial, rounds
    assert result == pytest.approx([{"median": 2.0, "min": 1.0}[statistic],
                                     {"median": 5.0, "min": 4.0}[statistic]])
    assert result[0] == pytest.approx(expected)
    with pytest.raises(target.ProfileError, match="unknown statistic 'mean'"):
        target.time_calls(fns, torch.device("cpu"), statistic="mean")


def test_thread_clock_needs_one_cpu_thread(tiny):
    with target.num_threads(2), pytest.raises(target.ProfileError, match="1 thread"):
        target.time_calls([lambda: None], torch.device("cpu"), clock="thread")
    model = MeasuredLatency(tiny, threads=1, in_channels=1, num_classes=3, clock="thread", **FAST)
    assert model.latency_ms(tiny.max_arch()) > 0
    with pytest.raises(ConfigError, match="1 thread"):
        MeasuredLatency(tiny, threads=2, clock="thread", **FAST).latency_ms(tiny.min_arch())


def test_fit_recovers_exact_constants():
    feats = [(1.0, s, n) for s, n in [(1, 10), (2, 12), (5, 30), (3, 11), (8, 40), (4, 25), (6, 9)]]
    measured = [0.5 + 1.3 * s + 0.02 * n for _, s, n in feats]
    assert target.fit_constants(feats, measured) == pytest.approx([0.5, 1.3, 0.02])
    # Few networks: intercept and scale only; one network: the intercept only.
    assert target.fit_constants(feats[:2], measured[:2])[2] == 0.0
    assert target.fit_constants(feats[:1], [7.0]) == [7.0 - 1, 1.0, 0.0]


# ---------------------------------------------------------------------------------- enumeration


def _brute_force_keys(space, in_channels=1, num_classes=3):
    """Every width x kernel x resolution x op-on-all-edges combination at the largest depth."""
    keys = set()
    base = space.max_arch()
    for widths in itertools.product(*[s.width for s in space.stages]):
        for kernels in itertools.product(*[s.kernel for s in space.stages]):
            for res, op in itertools.product(space.resolution, space.ops):
                arch = dataclasses.replace(base, width=widths, kernel=kernels, resolution=res,
                                           cell=(op,) * len(space.edges))
                keys |= {item_key(i) for i in timed_items(space, arch, in_channels=in_channels,
                                                          num_classes=num_classes)}
    return keys


@pytest.mark.parametrize("name", ["tiny", "demo"])
def test_layer_configs_are_exactly_the_union_of_all_walks(name, tiny):
    space = tiny if name == "tiny" else load_space(name)
    configs = layer_configs(space, in_channels=1, num_classes=3)
    assert set(configs) == _brute_force_keys(space)


def test_random_archs_of_a_large_space_are_covered():
    space = load_space("nb201_elastic")
    configs = layer_configs(space, in_channels=3, num_classes=10)
    product = math.prod(len(s.width) * len(s.kernel) for s in space.stages) * len(space.ops)
    assert len(list(covering_archs(space))) < product / 5  # far fewer walks than brute force
    rng = random.Random(0)
    for _ in range(100):
        arch = space.sample(rng)
        assert {item_key(i) for i in timed_items(space, arch, in_channels=3, num_classes=10)} <= set(configs)


def test_node_sums_follow_the_cell_wiring(nb201):
    resnet = nb201.parse("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|")
    items = timed_items(nb201, resnet, in_channels=3, num_classes=10)
    first_cell = items[1:1 + 5]  # stem, then the cell's 4 non-zero edges and its node sums
    assert [i.op if not isinstance(i, NodeSum) else i.key for i in first_cell] == [
        "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "skip_connect", "node_add/c16/r32"]
    empty = nb201.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    sums = [i for i in timed_items(nb201, empty, in_channels=3, num_classes=10) if isinstance(i, NodeSum)]
    assert len(sums) == 15 * 3 and {s.kind for s in sums} == {"zeros"}


# ---------------------------------------------------------------------------------- module specs


def _same_function(reference: torch.nn.Module, spec: dict, layers: dict | None, shape) -> None:
    built = target.build_module(spec, layers)
    built.load_state_dict(reference.state_dict())  # strict: same layout
    reference.eval(), built.eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        torch.testing.assert_close(built(x), reference(x))


def test_every_op_of_the_registry_has_a_buildable_spec(tiny):
    with_bn = SearchSpace.from_config({**TINY, "reduction": "resblock_bn"})
    configs = {**layer_configs(tiny, in_channels=1, num_classes=3),
               **layer_configs(with_bn, in_channels=1, num_classes=3)}
    assert {i.op for i in configs.values() if not isinstance(i, NodeSum)} == {
        op for op in ops._REGISTRY if not ops.get(op).is_zero}
    for key, item in configs.items():
        if isinstance(item, NodeSum):
            continue
        module = item_module(item)
        for m in module.modules():  # non-trivial BN statistics so the comparison can fail
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
        _same_function(module, module_spec(module), None, [item.c_in, item.res_in, item.res_in])


@pytest.mark.parametrize("seed", range(4))
def test_network_specs_run_the_extracted_subnet(seed):
    space = load_space("demo")
    arch = space.sample(random.Random(seed))
    layer_list = export_layer_list(space, in_channels=1, num_classes=10, calibrate=[arch])
    net = layer_list["networks"][0]
    torch.manual_seed(seed)
    subnet = build_subnet(space, arch, in_channels=1, num_classes=10)
    _same_function(subnet, net["module"], layer_list["layers"], net["input"])
    assert net["layers"] == [item_key(i) for i in timed_items(space, arch, in_channels=1,
                                                               num_classes=10)]


def test_unknown_module_type_is_refused():
    with pytest.raises(ValueError, match="GELU"):
        module_spec(torch.nn.GELU())
    with pytest.raises(target.ProfileError, match="unknown module type 'gelu'"):
        target.build_module({"type": "gelu"})


# ---------------------------------------------------------------------------------- profiles


def test_profile_structure(tiny, tiny_profile):
    p = tiny_profile
    assert p["format"] == "ofa-nas-latency-profile" and p["version"] == 1
    assert p["space"]["config"] == tiny.to_config()
    assert p["model"] == {"in_channels": 1, "num_classes": 3}
    assert set(p["entries"]) == set(layer_configs(tiny, in_channels=1, num_classes=3))
    assert all(ms > 0 for ms in p["entries"].values())
    assert p["device"] == "cpu" and p["batch_size"] == 1 and p["threads"] == 1
    assert p["torch_version"] == torch.__version__ and p["dtype"] == "float32"
    assert len(p["fit"]["coef"]) == 3 and len(p["fit"]["archs"]) == 8
    v = p["validation"]
    assert v["num_archs"] == 3 and 0 <= v["within_10pct"] <= 1 and v["mape"] >= 0
    assert {r["arch"] for r in v["archs"]}.isdisjoint(r["arch"] for r in p["fit"]["archs"])


def test_lookup_table_predicts_sum_of_entries_plus_constants(tiny, tiny_profile):
    profile = {**tiny_profile, "fit": {**tiny_profile["fit"], "coef": [0.25, 1.5, 0.01]}}
    profile["entries"] = {k: (i % 7 + 1) / 10 for i, k in enumerate(sorted(profile["entries"]))}
    lut = LookupTableLatency(tiny, profile)
    for arch in [tiny.min_arch(), tiny.max_arch(), tiny.sample(random.Random(1))]:
        items = timed_items(tiny, arch, in_channels=1, num_classes=3)
        total = sum(profile["entries"][item_key(i)] for i in items)
        assert lut.latency_ms(arch) == pytest.approx(0.25 + 1.5 * total + 0.01 * len(items))
    assert lut.latency_ms(tiny.max_arch()) > lut.latency_ms(tiny.min_arch())


def test_profile_round_trips_through_a_file(tiny, tiny_profile, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(tiny_profile))
    model = make_latency_model(str(path), tiny, in_channels=1, num_classes=3)
    assert isinstance(model, LookupTableLatency) and model.device == "cpu"
    arch = tiny.sample(random.Random(2))
    assert model.latency_ms(arch) == LookupTableLatency(tiny, tiny_profile).latency_ms(arch) > 0


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.update(format="other"), "not a latency profile"),
    (lambda p: p.update(version=99), "version 99 is not supported"),
    (lambda p: p["space"]["config"]["stages"][0].update(width=[4, 16]), "does not match space"),
    (lambda p: p.pop("entries"), "lacks entries"),
])
def test_bad_profiles_are_refused(tiny, tiny_profile, tmp_path, edit, message):
    profile = json.loads(json.dumps(tiny_profile))
    edit(profile)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile))
    with pytest.raises(CheckpointError, match=message):
        load_profile(path, tiny)


def test_profile_of_other_model_or_missing_file(tiny, tiny_profile, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(tiny_profile))
    with pytest.raises(CheckpointError, match="num_classes=3, but the model has num_classes=10"):
        make_latency_model(f"lut:{path}", tiny, in_channels=1, num_classes=10)
    with pytest.raises(CheckpointError, match="not found"):
        make_latency_model(str(tmp_path / "missing.json"), tiny)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable JSON"):
        load_profile(tmp_path / "bad.json")


def test_device_script_builds_a_profile_the_framework_loads(tiny, tmp_path):
    """scripts/profile_device.py runs with nas made unimportable; its output loads."""
    layers = tmp_path / "layers.json"
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY))
    assert main(["profile", "--space", str(space_file), "--in-channels", "1", "--num-classes", "3",
                 "--export-layers", str(layers), "--calibrate", "4", "--validate", "2"]) == 0
    out = tmp_path / "device.json"
    script = ROOT / "scripts" / "profile_device.py"
    code = ("import sys, runpy; sys.modules['nas'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run(
        [sys.executable, "-c", code, str(script), str(layers), "--out", str(out), "--threads", "1",
         "--warmup", "1", "--repeats", "2", "--min-time-ms", "0.2", "--name", "board"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    profile = load_profile(out, tiny)
    assert set(profile["entries"]) == set(layer_configs(tiny, in_channels=1, num_classes=3))
    assert profile["validation"]["num_archs"] == 2
    model = make_latency_model(str(out), tiny, in_channels=1, num_classes=3)
    assert model.device == "board" and model.latency_ms(tiny.max_arch()) > 0


def test_device_script_is_the_packaged_profiler():
    """One source: scripts/profile_device.py is (a link to) nas/latency/target.py, which imports
    nothing but torch and the standard library."""
    script = ROOT / "scripts" / "profile_device.py"
    assert script.read_bytes() == Path(target.__file__).read_bytes()
    imports = {line.split()[1].split(".")[0] for line in script.read_text().splitlines()
               if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "argparse", "ctypes", "datetime", "gc", "json", "math", "os", "platform",
                       "statistics", "sys", "tempfile", "time", "contextlib", "typing", "torch"}


def test_device_script_bad_input_is_one_line_and_exit_2(tmp_path):
    layers = tmp_path / "layers.json"
    layers.write_text(json.dumps({"format": "something-else"}))
    script = ROOT / "scripts" / "profile_device.py"
    for args, message in [([str(layers)], "not a layer list"),
                          ([str(tmp_path / "missing.json")], "cannot read the layer list")]:
        result = subprocess.run([sys.executable, str(script), *args, "--out", str(tmp_path / "o.json")],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_malformed_layer_lists_are_refused(tiny):
    good = export_layer_list(tiny, in_channels=1, num_classes=3, calibrate=[tiny.min_arch()])
    for edit, message in [(lambda l: l["networks"][0]["layers"].append("nope"), "not in the list"),
                          (lambda l: l["networks"][0].pop("role"), "needs arch, role"),
                          (lambda l: l.update(version=2), "version 2 is not supported"),
                          (lambda l: l.pop("layers"), "lacks 'layers'")]:
        bad = json.loads(json.dumps(good))
        edit(bad)
        with pytest.raises(target.ProfileError, match=message):
            target.profile_layer_list(bad)


def test_unknown_device_is_a_clear_error(tiny):
    with pytest.raises(ConfigError, match="unknown device 'tpu'; choose cpu, cuda, cuda:N or mps"):
        make_latency_model("measured:tpu", tiny)
    with pytest.raises(ConfigError, match="unknown device"):
        build_profile(tiny, in_channels=1, num_classes=3, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="not available here"):
            make_latency_model("measured:cuda", tiny)


# ---------------------------------------------------------------------------------- other models


def test_measured_latency_times_the_subnet(tiny, monkeypatch):
    model = MeasuredLatency(tiny, threads=1, in_channels=1, num_classes=3, **FAST)
    built = []
    real = build_subnet

    def spy(*args, **kwargs):
        built.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr("nas.latency.models.build_subnet", spy)
    archs = [tiny.min_arch(), tiny.max_arch()]
    rng_state = torch.get_rng_state()
    times = model.latencies_ms(archs)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the caller's RNG is left alone
    assert all(t > 0 for t in times) and built == archs
    assert model.latency_ms(archs[1]) == times[1] and len(built) == 2  # cached, not re-timed
    assert model.device == "cpu" and MeasuredLatency(tiny, batch_size=8).device == "cpu_b8"


def _write_table(path, rows, opener=open):
    with opener(path, "wt", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "arch", "lat_ms_board"])
        writer.writerows(rows)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_table_lookups_equal_the_csv(nb201, tmp_path, suffix):
    rng = random.Random(0)
    archs = list(dict.fromkeys(str(nb201.sample(rng)) for _ in range(20)))
    rows = [(i, a, round(1 + i * 0.37, 3)) for i, a in enumerate(archs)]
    path = tmp_path / f"t{suffix}"
    _write_table(path, rows, gzip.open if suffix.endswith(".gz") else open)
    model = make_latency_model(f"table:{path}:lat_ms_board", nb201)
    assert isinstance(model, TableLatency) and model.device == "board"
    for _, arch, ms in rows:
        assert model.latency_ms(nb201.parse(arch)) == ms
    missing = next(a for a in (nb201.sample(rng) for _ in range(100)) if str(a) not in archs)
    with pytest.raises(ArchError, match="no lat_ms_board value"):
        model.latency_ms(missing)


def test_table_errors(nb201, demo, tmp_path):
    path = tmp_path / "t.csv"
    _write_table(path, [(0, str(nb201.max_arch()), 1.0)])
    with pytest.raises(CheckpointError, match="no column 'lat_ms_gpu'; columns: index, arch"):
        make_latency_model(f"table:{path}:lat_ms_gpu", nb201)
    with pytest.raises(CheckpointError, match="line 2: arch"):  # a table of another space
        make_latency_model(f"table:{path}:lat_ms_board", demo)
    with pytest.raises(CheckpointError, match="not found"):
        make_latency_model(f"table:{tmp_path / 'none.csv'}:lat_ms_board", nb201)


@pytest.mark.skipif(not NB201_CSV.is_file(), reason="NAS-Bench-201 table not available")
def test_nas_bench_201_table(nb201):
    model = TableLatency(nb201, NB201_CSV, "lat_ms_pixel2")
    assert len(model.table) == 15625
    with gzip.open(NB201_CSV, "rt") as f:
        rows = list(itertools.islice(csv.DictReader(f), 3))
    for row in rows:
        assert model.latency_ms(nb201.parse(row["arch"])) == float(row["lat_ms_pixel2"])


def test_flops_proxy_is_flops_over_a_nominal_throughput(demo):
    model = make_latency_model("flops", demo, in_channels=1)
    assert isinstance(model, FlopsLatency) and model.device == "flops"
    rng = random.Random(0)
    for _ in range(20):
        arch = demo.sample(rng)
        flops = demo.flops(arch, in_channels=1, num_classes=10)
        assert model.latency_ms(arch) == pytest.approx(flops / 1e10 * 1e3)
        for s, stage in enumerate(demo.stages):  # a wider stage is never cheaper
            if arch.width[s] != max(stage.width):
                wider = list(arch.width)
                wider[s] = max(stage.width)
                assert model.latency_ms(dataclasses.replace(arch, width=tuple(wider))) > model.latency_ms(arch)


def test_factory_forms_and_errors(demo):
    assert make_latency_model("measured:cpu", demo).kind == "measured"

    def my_board(arch):
        return 3.0
    model = make_latency_model(my_board, demo)
    assert isinstance(model, LatencyModel) and model.device == "my_board"
    assert model.latency_ms(demo.max_arch()) == 3.0
    assert make_latency_model(model, demo) is model
    assert make_latency_model("measured:cpu@cpu_measured", demo).device == "cpu_measured"
    for bad in ["", "measured", "gpu", "table:only-path", "flops@", "@x"]:
        with pytest.raises(ConfigError):
            make_latency_model(bad, demo)
    with pytest.raises(ArchError):
        make_latency_model("flops", demo).latency_ms(load_space("nb201").max_arch())


# ---------------------------------------------------------------------------------- nas profile


def test_nas_profile_writes_a_profile(tmp_path, capsys):
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "latency" / "cpu.json"
    code = main(["profile", "--space", str(space_file), "--device", "cpu", "--out", str(out),
                 "--threads", "1", "--calibrate", "3", "--validate", "2", "--warmup", "1",
                 "--repeats", "1", "--min-time-ms", "0.2", "--batch-size", "2"])
    assert code == 0
    profile = load_profile(out, SearchSpace.from_yaml(space_file))
    assert profile["batch_size"] == 2 and profile["device"] == "cpu_b2"
    printed = capsys.readouterr().out
    assert "validation on 2 archs: MAPE" in printed and "Kendall tau" in printed


@pytest.mark.parametrize("extra, message", [
    (["--device", "tpu", "--out", "p.json"], "unknown device 'tpu'"),
    ([], "give --out"),
    (["--out", "p.json", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["--checkpoint", "missing.pt", "--out", "p.json"], "checkpoint not found"),
])
def test_nas_profile_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(yaml.safe_dump(TINY))
    source = [] if "--checkpoint" in extra else ["--space", str(space_file)]
    assert main(["profile", *source, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "p.json").exists()
