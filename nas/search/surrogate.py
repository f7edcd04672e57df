"""Surrogate assistance: a small model of the metrics, fitted during the search on what was
evaluated so far, that ranks proposed children so that queries go to the most promising ones.

As Once-for-All's accuracy predictor, but trained online and in numpy: kernel ridge regression
(the posterior mean of a Gaussian process) on ``space.encode(arch)``. The kernel (linear,
quadratic or RBF) and the ridge strength are chosen at every fit by exact leave-one-out error,
so the same code models latencies (near-additive over the cell's ops: the linear kernel wins)
and accuracies (interactions: the RBF kernel usually wins). The model also returns a
standard deviation (the Gaussian-process posterior's), which searchers use for optimism.

Searchers call :meth:`Surrogate.fit` on their candidates, then :meth:`Surrogate.predict` on
many more proposals than they will query (e.g. 10x) and keep the best predicted. The model is
deterministic (no random initialisation), so a search stays reproducible from its seed.

This module is torch-free; it does not choose archs (see :mod:`nas.search.evolution`).
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os
from typing import Iterator, Mapping, Sequence

import numpy as np

from nas.candidate import Candidate
from nas.space import Arch, SearchSpace

KERNELS = ("linear", "quadratic", "rbf:4")
LAMBDAS = (1e-2, 1e-1, 1.0, 10.0, 100.0)


def _openblas() -> tuple | None:
    """numpy's bundled OpenBLAS thread getter and setter, if it can be found (ctypes)."""
    folder = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(folder, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", "_64_", ""):
            get = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                return get, put
    return None


_BLAS = _openblas()


@contextlib.contextmanager
def single_thread_blas() -> Iterator[None]:
    """Runs numpy's OpenBLAS on one thread inside the block (restored after).

    The surrogate's matrices are small (a few hundred rows): there, threading costs far more
    than it gains (an eigendecomposition of 200 x 200 took 135 ms on 2 threads against 2 ms on
    one, on a 2-core machine), and one thread also makes the results independent of the thread
    count, so that every ``torchrun`` rank makes the same choices. Without numpy's bundled
    OpenBLAS this does nothing.
    """
    if _BLAS is None:
        yield
        return
    get, put = _BLAS
    before = get()
    put(1)
    try:
        yield
    finally:
        put(before)


def _raw_kernel(kind: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dot = a @ b.T
    if kind == "linear":
        return dot
    if kind == "quadratic":
        return (1.0 + dot) ** 2
    name, _, scale = kind.partition(":")
    if name == "rbf":
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * dot
        return np.exp(-np.maximum(sq, 0.0) / (2.0 * float(scale or 4.0)))
    raise ValueError(f"unknown kernel {kind!r}; use linear, quadratic or rbf:SCALE")


def _self_kernel(kind: str, a: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)
    return {"linear": sq, "quadratic": (1.0 + sq) ** 2}.get(kind, np.ones(len(a)))


def _kernel(kind: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``linear`` a.b, ``quadratic`` (1 + a.b)^2 or ``rbf:S`` exp(-|a - b|^2 / 2S), normalised
    to a unit diagonal (k(a, b) / sqrt(k(a, a) k(b, b))) so that one ridge grid and one
    posterior-variance scale serve every kernel. With one-hot encodings two archs one choice
    apart are at squared distance 2."""
    norm = np.sqrt(np.maximum(_self_kernel(kind, a), 1e-12))[:, None] \
        * np.sqrt(np.maximum(_self_kernel(kind, b), 1e-12))[None, :]
    return _raw_kernel(kind, a, b) / norm


class KernelRidge:
    """Kernel ridge regression whose kernel and ridge strength are picked by leave-one-out.

    Args:
        kernels: candidate kernels (``linear``, ``quadratic``, ``rbf:SCALE``, see
            :func:`_kernel`).
        lambdas: candidate ridge strengths (on standardised targets).
    """

    def __init__(self, kernels: Sequence[str] = KERNELS, lambdas: Sequence[float] = LAMBDAS):
        self.kernels, self.lambdas = tuple(kernels), tuple(lambdas)
        self.kernel: str | None = None
        self.lam = self.loo_mse = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> "KernelRidge":
        """Fits on ``x`` (n, d) and ``y`` (n,), n >= 2.

        The leave-one-out residual of kernel ridge is exact in closed form,
        ``alpha_i / [(K + lam I)^-1]_ii``, so one eigendecomposition per kernel scores every
        ridge strength.
        """
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self.mean = float(y.mean())
        self.scale = float(y.std()) or 1.0
        z = (y - self.mean) / self.scale
        best = None
        for kind in self.kernels:
            s, u = np.linalg.eigh(_kernel(kind, x, x))
            s = np.maximum(s, 0.0)
            uz = u.T @ z
            for lam in self.lambdas:
                inv = 1.0 / (s + lam)
                alpha = u @ (inv * uz)
                diag = (u * u) @ inv
                mse = float(np.mean((alpha / diag) ** 2))
                if best is None or mse < best[0] - 1e-12:
                    best = (mse, kind, lam, alpha, u, inv)
        self.loo_mse, self.kernel, self.lam, self.alpha, u, inv = best
        self._inv = (u * inv) @ u.T  # (K + lam I)^-1, for the posterior variance
        self.x = x
        return self

    def predict(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (Gaussian-process posterior) at ``z`` (m, d)."""
        z = np.asarray(z, dtype=float)
        k = _kernel(self.kernel, z, self.x)
        mean = k @ self.alpha * self.scale + self.mean
        var = 1.0 - ((k @ self._inv) * k).sum(1)  # unit prior variance (normalised kernel)
        return mean, np.sqrt(np.maximum(var, 0.0)) * self.scale


class Surrogate:
    """Predicts metrics of archs from ``space.encode(arch)`` (see the module docstring).

    Args:
        space: the search space (for the encoding; encodings are cached per arch).
        keys: the metric keys to model.
        floor_quantile: per key, a quantile below which targets are raised to it before
            fitting, e.g. ``{"top1": 0.5}``: the model then spends its capacity ranking the
            good half instead of fitting broken archs (a cell cut off from its output).
        max_train: fit on at most this many candidates (the most recent), to bound the cost.
    """

    def __init__(self, space: SearchSpace, keys: Sequence[str], *,
                 floor_quantile: Mapping[str, float] | None = None, max_train: int = 500,
                 kernels: Sequence[str] = KERNELS):
        self.space = space
        self.keys = tuple(keys)
        self.floor_quantile = dict(floor_quantile or {})
        self.max_train = max_train
        self.kernels = tuple(kernels)
        self.models: dict[str, KernelRidge] = {}
        self._codes: dict[Arch, np.ndarray] = {}

    def encode(self, archs: Sequence[Arch]) -> np.ndarray:
        """The (n, d) encodings of ``archs``."""
        rows = []
        for arch in archs:
            code = self._codes.get(arch)
            if code is None:
                code = self._codes[arch] = np.asarray(self.space.encode(arch), dtype=float)
            rows.append(code)
        return np.stack(rows)

    def fit(self, candidates: Sequence[Candidate]) -> bool:
        """Fits one model per key on ``candidates``. Returns False (and fits nothing) with
        fewer than 3 candidates."""
        candidates = list(candidates)[-self.max_train:]
        if len(candidates) < 3:
            self.models = {}
            return False
        x = self.encode([c.arch for c in candidates])
        with single_thread_blas():
            for key in self.keys:
                y = np.array([c.metrics[key] for c in candidates], dtype=float)
                if key in self.floor_quantile:
                    y = np.maximum(y, np.quantile(y, self.floor_quantile[key]))
                self.models[key] = KernelRidge(self.kernels).fit(x, y)
        return True

    @property
    def fitted(self) -> bool:
        return bool(self.models)

    def predict(self, archs: Sequence[Arch]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per key, the predicted mean and standard deviation of every arch (arrays of len n)."""
        x = self.encode(archs)
        with single_thread_blas():
            return {key: model.predict(x) for key, model in self.models.items()}
