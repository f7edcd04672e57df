"""The op-level lookup table: entry keys from the walk, the layer list, profiles, predictions.

Every layer :meth:`SearchSpace.walk` yields is identified by its configuration key
``OP/cC_IN-C_OUT/kK/sSTRIDE/rRES_IN`` (:func:`layer_key`; the classifier's ``C_OUT`` is the
number of classes); the elementwise ops of a cell's node sums, which the walk does not list, get
keys ``node_add/cC/rRES`` and ``node_zeros/cC/rRES`` (:class:`NodeSum`). :func:`layer_configs`
enumerates every key the space can produce, exactly, as the union of the walks of a covering set
of archs (each stage's widths, the next stage's widths and the stage's kernels at every
resolution, each op on every edge), far fewer walks than the space has archs.
:func:`export_layer_list` turns them (and some whole networks) into the JSON layer list that the
torch-only profiler (:mod:`nas.latency.target`) times; :func:`build_profile` does so in-process.
:class:`LookupTableLatency` predicts an arch's latency from a profile as ``intercept + scale *
sum(entries of its walk layers and node sums) + per_item * their number``.

What this module does not do: time anything itself (that is :mod:`nas.latency.target`, shared
with targets that lack the framework) or decide which archs a search evaluates.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
import random
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, Union

from torch import nn

from nas import ops
from nas.errors import CheckpointError
from nas.latency import target
from nas.latency.base import LatencyModel
from nas.latency.specs import NodeOp, Ref, module_spec
from nas.space import Arch, Layer, SearchSpace
from nas.supernet import _assemble


def layer_key(layer: Layer) -> str:
    """The lookup-table key of a walk layer: ``OP/cC_IN-C_OUT/kK/sSTRIDE/rRES_IN``."""
    return (f"{layer.op}/c{layer.c_in}-{layer.c_out}/k{layer.kernel}/s{layer.stride}"
            f"/r{layer.res_in}")


@dataclass(frozen=True)
class NodeSum:
    """One elementwise op of a cell's node sums, which the walk does not list as a layer:
    ``add`` (a node's second, third... incoming edge) or ``zeros`` (a node whose incoming edges
    are all the zero op), on ``(B, channels, res, res)``."""

    kind: str
    channels: int
    res: int

    @property
    def key(self) -> str:
        return f"node_{self.kind}/c{self.channels}/r{self.res}"


Item = Union[Layer, NodeSum]


def item_key(item: Item) -> str:
    """The lookup-table key of a walk layer or a node sum."""
    return item.key if isinstance(item, NodeSum) else layer_key(item)


def timed_items(space: SearchSpace, arch: Arch, *, in_channels: int,
                num_classes: int) -> list[Item]:
    """What the table sums for ``arch``: its walk layers except the zero op, and after each
    cell's edges the cell's node sums (from the cell wiring ``space.edges``), in order."""
    items: list[Item] = []
    incoming: list[int] = []  # non-zero incoming edges per node of the current cell
    width = res = 0

    def close_cell() -> None:
        for count in incoming[1:]:
            items.extend([NodeSum("add", width, res)] * (count - 1) if count
                         else [NodeSum("zeros", width, res)])
        incoming.clear()

    for layer in space.walk(arch, in_channels=in_channels, num_classes=num_classes):
        if layer.edge <= 0 and incoming:  # a new cell or a fixed block ends the current cell
            close_cell()
        is_zero = ops.get(layer.op).is_zero
        if layer.edge >= 0:
            if layer.edge == 0:
                incoming[:] = [0] * space.num_nodes
                width, res = layer.c_in, layer.res_in
            incoming[space.edges[layer.edge][1]] += not is_zero
        if not is_zero:
            items.append(layer)
    close_cell()
    return items


def covering_archs(space: SearchSpace) -> Iterator[Arch]:
    """Archs whose walks together hold every layer configuration of the space.

    A walk layer depends on its stage's width, kernel and input resolution, the op, and (the
    reduction block) the next stage's width; the stem and head depend on the first and last
    widths. So each stage's (width, next width, kernel) triples at each resolution, with each op
    on every edge and the shallowest depth, cover the space (checked against brute force over
    all widths and kernels in the tests).
    """
    base = space.min_arch()
    last = len(space.stages) - 1
    for resolution in space.resolution:
        for op in space.ops:
            for s, stage in enumerate(space.stages):
                for width in stage.width:
                    for width_next in (space.stages[s + 1].width if s < last else (None,)):
                        for kernel in stage.kernel:
                            widths, kernels = list(base.width), list(base.kernel)
                            widths[s], kernels[s] = width, kernel
                            if width_next is not None:
                                widths[s + 1] = width_next
                            yield dataclasses.replace(
                                base, cell=(op,) * len(space.edges), width=tuple(widths),
                                kernel=tuple(kernels), resolution=resolution)


def layer_configs(space: SearchSpace, *, in_channels: int, num_classes: int) -> dict[str, Item]:
    """Every distinct timed configuration of the space (walk layers and node sums): key -> one
    such item, sorted by key."""
    configs: dict[str, Item] = {}
    for arch in covering_archs(space):
        for item in timed_items(space, arch, in_channels=in_channels, num_classes=num_classes):
            configs.setdefault(item_key(item), item)
    return dict(sorted(configs.items()))


def item_module(item: Item) -> nn.Module:
    """The plain module of one item (freshly initialised): a walk layer as an extracted subnet
    has it, or the node-sum op."""
    if isinstance(item, NodeSum):
        return NodeOp(item.kind)
    spec = ops.get(item.op)
    return spec.make_dynamic(item.c_in, item.c_out, item.kernel or 1, item.stride).extract(
        item.c_in, item.c_out, item.kernel)


def item_input(item: Item) -> list[int]:
    """The ``[C, H, W]`` input of one item."""
    if isinstance(item, NodeSum):
        return [item.channels, item.res, item.res]
    return [item.c_in, item.res_in, item.res_in]


# ---------------------------------------------------------------------------------- layer lists


def network_spec(space: SearchSpace, arch: Arch, *, in_channels: int,
                 num_classes: int) -> dict[str, Any]:
    """The spec of the whole subnet ``arch``, its layers as refs to their keys.

    Built by the same assembly as :func:`nas.supernet.build_subnet`, so the device profiler runs
    the same graph as an extracted subnet.
    """
    space.check(arch)
    layers = list(space.walk(arch, in_channels=in_channels, num_classes=num_classes))
    refs = [None if ops.get(l.op).is_zero else Ref(layer_key(l)) for l in layers]
    return module_spec(_assemble(space, layers, refs))


def sample_archs(space: SearchSpace, n: int, rng: random.Random, *,
                 extremes: bool = False) -> list[Arch]:
    """``n`` distinct archs (fewer if the space is smaller): with ``extremes``, the smallest and
    largest first, then uniform samples from ``rng``."""
    out: dict[str, Arch] = {}
    if extremes:
        for arch in (space.min_arch(), space.max_arch()):
            out.setdefault(str(arch), arch)
    tries = 0
    while len(out) < n and tries < 50 * n:
        arch = space.sample(rng)
        out.setdefault(str(arch), arch)
        tries += 1
    return list(out.values())[:n]


def profile_archs(space: SearchSpace, calibrate: int, validate: int,
                  seed: int) -> tuple[list[Arch], list[Arch]]:
    """The networks a profile times: ``calibrate`` archs (the smallest, the largest, then random)
    to fit the constants, and ``validate`` other random archs to report the error."""
    rng = random.Random(seed)
    calib = sample_archs(space, calibrate, rng, extremes=True)
    seen = {str(a) for a in calib}
    valid = [a for a in sample_archs(space, validate + len(calib), rng) if str(a) not in seen]
    return calib, valid[:validate]


def export_layer_list(space: SearchSpace, *, in_channels: int, num_classes: int,
                      calibrate: Sequence[Arch] = (), validate: Sequence[Arch] = ()) -> dict:
    """The layer list of ``space`` for the device profiler (schema in :mod:`nas.latency.target`).

    Args:
        space: the search space.
        in_channels: image channels of the model.
        num_classes: classifier outputs of the model.
        calibrate: whole networks timed to fit the table's constants.
        validate: whole networks timed only to report the table's error.
    """
    configs = layer_configs(space, in_channels=in_channels, num_classes=num_classes)
    layers = {key: {"input": item_input(item), "module": module_spec(item_module(item))}
              for key, item in configs.items()}
    networks = []
    for role, archs in (("calibrate", calibrate), ("validate", validate)):
        for arch in archs:
            keys = [item_key(i) for i in timed_items(space, arch, in_channels=in_channels,
                                                      num_classes=num_classes)]
            networks.append({"arch": str(arch), "role": role,
                             "input": [in_channels, arch.resolution, arch.resolution],
                             "layers": keys, "module": network_spec(
                                 space, arch, in_channels=in_channels, num_classes=num_classes)})
    return {"format": target.LAYERS_FORMAT, "version": target.LAYERS_VERSION,
            "space": {"name": space.name, "config": space.to_config()},
            "model": {"in_channels": in_channels, "num_classes": num_classes},
            "layers": layers, "networks": networks}


def build_profile(space: SearchSpace, *, in_channels: int, num_classes: int, device: str = "cpu",
                  batch_size: int = 1, threads: int | None = None, calibrate: int = 20,
                  validate: int = 0, seed: int = 0, name: str | None = None, warmup: int = 3,
                  repeats: int = 7, min_time_ms: float = 5.0, statistic: str = "median",
                  clock: str = "wall", progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Builds the lookup-table profile of ``space`` on this machine's ``device``.

    Args:
        calibrate: whole networks (the smallest, the largest, then random) timed to fit the
            constants.
        validate: other random networks timed to report the table's error (0: none).
        seed: seeds the choice of those networks.
        Others: see :func:`nas.latency.target.profile_layer_list`.

    Raises:
        ConfigError: an unknown or unavailable device, or a bad setting.
    """
    from nas.latency.base import resolve_device

    resolve_device(device)
    calib, valid = profile_archs(space, calibrate, validate, seed)
    layer_list = export_layer_list(space, in_channels=in_channels, num_classes=num_classes,
                                   calibrate=calib, validate=valid)
    try:
        return target.profile_layer_list(
            layer_list, device=device, batch_size=batch_size, threads=threads, name=name,
            warmup=warmup, repeats=repeats, min_time_ms=min_time_ms, statistic=statistic,
            clock=clock, progress=progress)
    except target.ProfileError as exc:
        from nas.errors import ConfigError
        raise ConfigError(str(exc)) from None


# ---------------------------------------------------------------------------------- profiles

_PROFILE_KEYS = ("space", "model", "device", "batch_size", "entries", "fit")


def load_profile(path: str | Path, space: SearchSpace | None = None) -> dict:
    """Reads a device profile, checking its format and (if given) that it is of ``space``.

    Raises:
        CheckpointError: a missing or unreadable file, another format or version, or a profile
            built for another search space.
    """
    path = Path(path)
    try:
        profile = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: latency profile not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON latency profile ({exc})") from None
    if not isinstance(profile, dict) or profile.get("format") != target.PROFILE_FORMAT:
        found = profile.get("format") if isinstance(profile, dict) else type(profile).__name__
        raise CheckpointError(f"{path}: not a latency profile (format {found!r}, expected "
                              f"{target.PROFILE_FORMAT!r}); build one with `nas profile`")
    if profile.get("version") != target.PROFILE_VERSION:
        raise CheckpointError(f"{path}: latency profile version {profile.get('version')!r} is not "
                              f"supported (this version reads {target.PROFILE_VERSION})")
    missing = [k for k in _PROFILE_KEYS if k not in profile]
    if missing:
        raise CheckpointError(f"{path}: latency profile lacks {', '.join(missing)}")
    if space is not None:
        check_profile_space(profile, space, where=str(path))
    return profile


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "description"}


def check_profile_space(profile: dict, space: SearchSpace, where: str = "profile") -> None:
    """Raises CheckpointError unless the profile was built for ``space`` (same choices)."""
    recorded = profile["space"].get("config", {})
    if _comparable(recorded) != _comparable(space.to_config()):
        raise CheckpointError(
            f"{where}: latency profile of space {profile['space'].get('name')!r} does not match "
            f"space {space.name!r} (its choices differ); build one for this space with "
            f"`nas profile --space {space.source or 'SPACE.yaml'}`")


class LookupTableLatency(LatencyModel):
    """Latency predicted from a device profile: the sum of the table entries of the arch's walk
    layers, with the profile's fitted constants.

    Args:
        space: the search space (must be the profile's).
        profile: a profile dict, or the path of a profile file.

    Raises:
        CheckpointError: see :func:`load_profile`.
    """

    kind = "lut"
    cheap = True

    def __init__(self, space: SearchSpace, profile: dict | str | Path):
        if not isinstance(profile, dict):
            profile = load_profile(profile, space)
        else:
            check_profile_space(profile, space)
        self.space, self.profile = space, profile
        self.device = profile["device"]
        self.batch_size = profile["batch_size"]
        self.entries: dict[str, float] = profile["entries"]
        self.coef: list[float] = profile["fit"]["coef"]
        self.in_channels = profile["model"]["in_channels"]
        self.num_classes = profile["model"]["num_classes"]

    def features(self, arch: Arch) -> tuple[float, int]:
        """``(sum of the entries of the arch's timed layers, their number)``.

        Raises:
            ArchError: ``arch`` is not of the space.
            CheckpointError: the profile lacks a layer (it is stale or incomplete).
        """
        self.space.check(arch)
        total, count = 0.0, 0
        for item in timed_items(self.space, arch, in_channels=self.in_channels,
                                num_classes=self.num_classes):
            key = item_key(item)
            try:
                total += self.entries[key]
            except KeyError:
                raise CheckpointError(f"latency profile for {self.device} has no entry for layer "
                                      f"{key}; rebuild it with `nas profile`") from None
            count += 1
        return total, count

    def latency_ms(self, arch: Arch) -> float:
        total, count = self.features(arch)
        return target.predict(self.coef, total, count)
