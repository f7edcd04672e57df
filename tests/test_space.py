"""Search-space YAML validation, Arch strings and the genetic operators."""
import json
import random
from dataclasses import replace

import pytest
import yaml

from nas import SearchSpace
from nas.errors import ArchError, SpaceError
from tests.conftest import SHIPPED_SPACES, load_space

NB201_BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
RESNET_CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


def test_nb201_is_exactly_nas_bench_201(nb201):
    assert nb201.size() == 15625
    assert nb201.elastic == ()
    assert nb201.ops == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert [s.cells for s in nb201.stages] == [5, 5, 5]
    assert [s.width for s in nb201.stages] == [(16,), (32,), (64,)]
    assert len(nb201.edges) == 6
    # The all-3x3 network of NAS-Bench-201 has 1.53 M parameters on CIFAR-10 (published).
    assert nb201.params(nb201.max_arch(), in_channels=3, num_classes=10) == 1531546


def test_elastic_spaces_have_the_required_dimensions():
    space = load_space("nb201_elastic")
    assert space.elastic == ("depth", "width", "kernel")
    for stage in space.stages:
        assert stage.depth == (1, 2, 3, 4, 5)
        assert len(stage.width) >= 3
        assert stage.kernel == (3, 5)
    assert space.size() == 5 ** 6 * (5 * 4 * 2) ** 3


@pytest.mark.parametrize("text", [NB201_BEST, RESNET_CELL])
def test_official_cell_strings_round_trip(nb201, text):
    arch = nb201.parse(text)
    assert str(arch) == text
    assert nb201.parse(str(arch)) == arch


def test_official_table_strings_parse_and_print_identically(nb201):
    import csv, gzip
    from pathlib import Path
    table = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201.csv.gz"
    if not table.exists():
        pytest.skip("NAS-Bench-201 table not present (developers and CI only)")
    with gzip.open(table, "rt") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15625
    assert {str(nb201.parse(r["arch"])) for r in rows} == {r["arch"] for r in rows}


@pytest.mark.parametrize("name", SHIPPED_SPACES)
def test_arch_round_trips_and_is_hashable(name):
    space = load_space(name)
    rng = random.Random(0)
    archs = [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(50)]
    for arch in archs:
        assert space.parse(str(arch)) == arch
        assert space.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
        assert hash(space.parse(str(arch))) == hash(arch)
        assert len(space.encode(arch)) == len(space.encode(archs[0]))
    assert len(set(archs)) > 40


@pytest.mark.parametrize("name", SHIPPED_SPACES)
def test_mutate_changes_exactly_one_choice(name):
    space = load_space(name)
    rng = random.Random(1)
    for _ in range(100):
        a = space.sample(rng)
        b = space.mutate(a, rng)
        da, db = a.to_dict(), b.to_dict()
        diffs = sum(x != y for k in da for x, y in zip(
            da[k] if isinstance(da[k], list) else [da[k]], db[k] if isinstance(db[k], list) else [db[k]]))
        assert diffs == 1


def test_crossover_takes_every_choice_from_a_parent(demo):
    rng = random.Random(2)
    a, b = demo.sample(rng), demo.sample(rng)
    for _ in range(20):
        c = demo.crossover(a, b, rng)
        for key, values in c.to_dict().items():
            values = values if isinstance(values, list) else [values]
            pa = a.to_dict()[key] if isinstance(a.to_dict()[key], list) else [a.to_dict()[key]]
            pb = b.to_dict()[key] if isinstance(b.to_dict()[key], list) else [b.to_dict()[key]]
            assert all(v in (x, y) for v, x, y in zip(values, pa, pb))


def test_sampling_is_reproducible_from_the_rng(demo):
    first = [demo.sample(random.Random(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    assert demo.sample(random.Random(8)) != first[0] or demo.sample(random.Random(9)) != first[0]


def test_size_counts_every_choice(demo):
    assert demo.size() == 3 ** 6 * (2 * 3) ** 3


def test_encoding_distinguishes_archs_up_to_dead_edges(demo):
    rng = random.Random(3)
    archs = {demo.sample(rng) for _ in range(200)}
    live = {replace(a, cell=demo.live_cell(a.cell)) for a in archs}
    assert len({tuple(demo.encode(a)) for a in archs}) == len(live) > 150


def test_live_cell_drops_exactly_the_edges_that_never_reach_the_output(nb201):
    # node 1 feeds only node 2, node 2 feeds nothing: edges into 1 and 2 are dead
    cell = nb201.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|"
                             "+|skip_connect~0|none~1|none~2|").cell
    assert nb201.live_cell(cell) == ("none", "none", "none", "skip_connect", "none", "none")
    # the same cell with node 2 feeding the output: everything is live
    cell = nb201.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|"
                             "+|skip_connect~0|none~1|avg_pool_3x3~2|").cell
    assert nb201.live_cell(cell) == cell
    a = nb201.parse("|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    b = nb201.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert nb201.encode(a) == nb201.encode(b)


@pytest.mark.parametrize("text, message", [
    ("", "empty arch string"),
    ("|nor_conv_3x3~0|+|none~0|", "3 '+'-separated node groups"),
    ("|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|", "op 'conv_7x7' is not in space"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "expected 'op~0'"),
    ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "must start and end with '|'"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 needs 2 inputs"),
    (NB201_BEST + ";depth=6,2,2;width=8,16,32;kernel=3,3,3", "depth 6 at stage 0 is not in space"),
    (NB201_BEST + ";depth=2,2;width=8,16,32;kernel=3,3,3", "depth needs 3 value"),
    (NB201_BEST + ";colour=red", "expected KEY=VALUES"),
])
def test_malformed_arch_strings_get_clear_errors(text, message):
    with pytest.raises(ArchError, match=message.replace("|", r"\|").replace("+", r"\+")):
        load_space("nb201_elastic").parse(text)


def test_elastic_arch_string_needs_every_elastic_dimension(demo):
    with pytest.raises(ArchError, match="missing width, kernel"):
        load_space("nb201_elastic").parse(NB201_BEST + ";depth=1,1,1")
    with pytest.raises(ArchError, match="missing width"):
        demo.parse(NB201_BEST + ";depth=1,1,1")


def test_arch_of_another_space_is_rejected(nb201, demo):
    with pytest.raises(ArchError, match="is not in space 'nb201'"):
        nb201.check(demo.min_arch())


def _write(tmp_path, config):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(config) if not isinstance(config, str) else config)
    return path


def _valid():
    return {"cell": {"nodes": 4, "ops": ["none", "nor_conv_3x3"]},
            "stages": [{"cells": 2, "depth": [1, 2], "width": [8, 16], "kernel": [3, 5]},
                       {"cells": 2, "width": [16]}],
            "resolution": [28]}


@pytest.mark.parametrize("mutate, where, message", [
    (lambda c: c.update(colour="red"), "colour", "unknown key 'colour'; allowed keys"),
    (lambda c: c["stages"][0].update(widht=[8]), r"stages\[0\].widht", "unknown key 'widht'"),
    (lambda c: c["cell"]["ops"].append("conv_9x9"), r"cell.ops\[2\]",
     "unknown op 'conv_9x9'; valid ops: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3"),
    (lambda c: c["stages"][0].update(width=[]), r"stages\[0\].width", "choice list is empty"),
    (lambda c: c["stages"][1].update(width=[0]), r"stages\[1\].width\[0\]", "integer >= 1, got 0"),
    (lambda c: c["stages"][1].update(width=[-8]), r"stages\[1\].width\[0\]", "integer >= 1, got -8"),
    (lambda c: c["stages"][1].update(width=[12.5]), r"stages\[1\].width\[0\]", "integer >= 1, got 12.5"),
    (lambda c: c["stages"][0].update(depth=[1, 3]), r"stages\[0\].depth\[1\]",
     "depth 3 is larger than the stage's 2 cells"),
    (lambda c: c["stages"][0].update(kernel=[3, 4]), r"stages\[0\].kernel\[1\]", "kernel 4 is even"),
    (lambda c: c["stages"][0].update(width="wide"), r"stages\[0\].width", "must be a list of choices"),
    (lambda c: c["cell"].update(nodes="four"), "cell.nodes", "must be an integer"),
    (lambda c: c.update(stages={"a": 1}), "stages", "non-empty list"),
    (lambda c: c.pop("cell"), "cell", "required key is missing"),
    (lambda c: c.update(resolution=[27]), r"resolution\[0\]", "not divisible by 2"),
    (lambda c: c.update(reduction="resblock_se"), "reduction",
     "unknown reduction block 'resblock_se'; allowed: resblock, resblock_bn"),
])
def test_bad_yaml_names_file_key_and_what_is_allowed(tmp_path, mutate, where, message):
    config = _valid()
    mutate(config)
    path = _write(tmp_path, config)
    with pytest.raises(SpaceError, match=rf"{tmp_path}/space.yaml: {where}: .*{message}"):
        SearchSpace.from_yaml(path)


def test_valid_yaml_loads_and_unparseable_yaml_is_reported(tmp_path):
    assert SearchSpace.from_yaml(_write(tmp_path, _valid())).size() == 2 ** 6 * (2 * 2 * 2)
    with pytest.raises(SpaceError, match="not valid YAML"):
        SearchSpace.from_yaml(_write(tmp_path, "cell: [unclosed"))
    with pytest.raises(SpaceError, match="not found"):
        SearchSpace.from_yaml(tmp_path / "missing.yaml")


def test_config_round_trip(demo):
    assert SearchSpace.from_config(demo.to_config()) == demo
