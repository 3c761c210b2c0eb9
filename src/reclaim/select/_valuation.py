"""Shared machinery of the data-valuation selectors (``tmc_shapley``, ``loo``, ``knn_shapley``)
and the ``valuation_stats`` evaluator: frozen features, the learner, the utility, and the
valuation math.

- Data Shapley (Ghorbani & Zou, ICML 2019, arXiv 1904.02868, Sec. 3, Algorithm 1): the
  value of point i is its mean marginal contribution v(S u {i}) - v(S) over random
  permutations (TMC-Shapley), with the paper's truncation (once |v(S) - v(D)| <=
  tolerance * v(D) for more than 5 consecutive prefixes, the rest of the permutation gets 0),
  v(D) the mean test score of the full-data model over bootstrap resamples of the test set,
  the empty-set score the majority-class accuracy, the model refit only once every test
  class is present in the prefix (before that the prefix scores as the empty set), and
  convergence when the mean relative change of the running means over the last ``window``
  iterations is below ``convergence_err``.
- Leave-one-out: v(D) - v(D \\ {i}) with the same learner and utility (the paper's baseline).
- KNN-Shapley (Jia et al., "Efficient task-specific data valuation for nearest neighbor
  algorithms", VLDB 12(11), 2019, arXiv 1908.08619, Theorem 1): exact Shapley values of the
  K-nearest-neighbour utility v(S) = (1/K) sum_{j <= min(K, |S|)} 1[y_{a_j(S)} = y_test]
  by the recursion s_N = 1[y_N = y]/N, s_i = s_{i+1} + (1[y_i = y] - 1[y_{i+1} = y]) *
  min(K, i) / (K * i) over the points sorted by distance, averaged over test points; here
  one reverse cumulative sum per test point.

Why written here and not taken from pyDVL (the maintained implementation, 0.10.0): it pins
numpy<2, and this project runs numpy 2.x (../shared/notes/data_selection.md, Sec. 3.4).
The functions below are tested against brute-force Shapley values on tiny sets.

The learner is a logistic regression (scikit-learn, L-BFGS: deterministic given the data) on
the arm's frozen encoder features (reclaim.select._frozen.embed), z-scored with the pool's
statistics. Every random draw comes from a numpy generator seeded by the job seed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reclaim.select import _frozen
from reclaim.select._base import ModelContext


@dataclass(frozen=True)
class LearnerParams(_frozen.EmbedParams):
    """The learner whose test accuracy is the utility (TMC, LOO, removal curves)."""

    C: float = 1.0              # inverse L2 strength of the logistic regression
    max_iter: int = 1000        # L-BFGS iterations

    def __post_init__(self) -> None:
        super().__post_init__()
        _frozen._require(isinstance(self.C, (int, float)) and not isinstance(self.C, bool) and self.C > 0,
                         f"C must be > 0, got {self.C!r}")
        _frozen._require(_frozen._is_int(self.max_iter) and self.max_iter >= 1,
                         f"max_iter must be an integer >= 1, got {self.max_iter!r}")


# --- features ----------------------------------------------------------------------------------


def features(ctx: ModelContext, pool: list[dict[str, Any]], other: list[dict[str, Any]],
             p: _frozen.EmbedParams, desc: str) -> tuple[np.ndarray, np.ndarray]:
    """Frozen features of ``pool`` and ``other`` (one encoder pass), both z-scored with the
    pool's mean and standard deviation (the learner's preprocessing, fit on training data)."""
    h = _frozen.embed(ctx, pool + other, p, desc)
    hp, ho = h[:len(pool)], h[len(pool):]
    mu, sd = hp.mean(axis=0), hp.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return (hp - mu) / sd, (ho - mu) / sd


def labels(rows: list[dict[str, Any]], where: str) -> np.ndarray:
    """Integer labels of labelled rows; a missing label is an error naming the file."""
    try:
        return np.array([int(r["label"]) for r in rows], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: every row needs an integer 'label' (a classification pool)") from None


# --- the learner and the utility ------------------------------------------------------------


def fit_predict(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, p: LearnerParams) -> np.ndarray:
    """Predictions of a logistic regression fit on (x, y); a single-class training set
    predicts that class (nothing to fit)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    classes = np.unique(y)
    if len(classes) < 2:
        return np.full(len(x_test), classes[0] if len(classes) else 0, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=p.C, max_iter=p.max_iter).fit(x, y)
    return model.predict(x_test)


class Utility:
    """v(S): test accuracy of the learner fit on the points S (indices into x, y).

    Ghorbani & Zou's conventions: v(empty) is the majority-class accuracy on the test set, and
    a prefix that lacks one of the test set's classes is not fit and scores as the empty set.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 p: LearnerParams) -> None:
        self.x, self.y, self.x_test, self.y_test, self.p = x, y, x_test, y_test, p
        counts = np.bincount(y_test)
        self.empty = float(counts.max() / len(y_test))
        self.test_classes = set(np.flatnonzero(counts).tolist())
        self.calls = 0

    def predictions(self, idx: Sequence[int] | np.ndarray) -> np.ndarray | None:
        idx = np.asarray(idx, dtype=np.int64)
        if not self.test_classes <= set(self.y[idx].tolist()):
            return None
        self.calls += 1
        return fit_predict(self.x[idx], self.y[idx], self.x_test, self.p)

    def __call__(self, idx: Sequence[int] | np.ndarray) -> float:
        pred = self.predictions(idx)
        return self.empty if pred is None else float((pred == self.y_test).mean())


def full_score(u: Utility, rng: np.random.Generator, resamples: int) -> tuple[float, float]:
    """v(D) as Ghorbani & Zou estimate it: the full-data model's accuracy, averaged over
    ``resamples`` bootstrap resamples of the test set; (mean, standard deviation)."""
    pred = u.predictions(np.arange(len(u.y)))
    if pred is None:
        return u.empty, 0.0
    hit = (pred == u.y_test).astype(np.float64)
    boots = np.array([hit[rng.integers(0, len(hit), len(hit))].mean() for _ in range(resamples)])
    return float(boots.mean()), float(boots.std())


# --- TMC-Shapley -------------------------------------------------------------------------------


def truncated_marginals(u: Callable[[np.ndarray], float], perm: np.ndarray, empty: float, v_full: float,
                        tolerance: float, patience: int = 5) -> tuple[np.ndarray, int]:
    """Marginal contributions along one permutation (indexed by point), and how many prefixes
    were scored. Scanning stops once |v(S) - v(D)| <= tolerance * v(D) has held for more than
    ``patience`` consecutive prefixes; the points after that get 0."""
    marg = np.zeros(len(perm))
    prev, streak = empty, 0
    for j, i in enumerate(perm):
        new = u(perm[:j + 1])
        marg[i] = new - prev
        prev = new
        if abs(new - v_full) <= tolerance * v_full:
            streak += 1
            if streak > patience:
                return marg, j + 1
        else:
            streak = 0
    return marg, len(perm)


def convergence_error(running: np.ndarray) -> float:
    """Ghorbani & Zou's stopping statistic over a window of running means (rows: iterations):
    the largest, over the window, of the mean over points of |m_t - m_last| / |m_last|."""
    last = running[-1]
    rel = np.abs(running - last) / (np.abs(last) + 1e-12)
    return float(rel.mean(axis=1).max())


def tmc_shapley(u: Callable[[np.ndarray], float], n: int, empty: float, v_full: float, rng: np.random.Generator,
                tolerance: float, max_iterations: int, convergence_err: float, window: int = 100,
                patience: int = 5) -> tuple[np.ndarray, dict[str, Any]]:
    """TMC-Shapley values of n points and a record of the run (iterations, prefixes scored,
    whether the convergence rule was met, the last convergence statistic, each value's Monte
    Carlo standard error). A negative ``tolerance`` never truncates (plain permutation MC)."""
    total, total_sq = np.zeros(n), np.zeros(n)
    history: list[np.ndarray] = []   # the running means of the last ``window`` iterations
    scored, err, converged, it = 0, float("nan"), False, 0
    for it in range(1, max_iterations + 1):
        marg, k = truncated_marginals(u, rng.permutation(n), empty, v_full, tolerance, patience)
        total += marg
        total_sq += marg ** 2
        scored += k
        history.append(total / it)
        if len(history) > window:
            history.pop(0)
        if it >= window:
            err = convergence_error(np.stack(history))
            if err < convergence_err:
                converged = True
                break
    values = total / it
    se = np.sqrt(np.maximum(total_sq / it - values ** 2, 0.0) / max(it - 1, 1))  # Monte Carlo se per point
    return values, {"iterations": it, "prefixes_scored": scored, "converged": converged,
                    "convergence_error": err, "mean_prefix_fraction": scored / (it * n), "se": se}


def leave_one_out(u: Callable[[np.ndarray], float], n: int) -> tuple[np.ndarray, float]:
    """v(D) - v(D \\ {i}) for every point, and v(D)."""
    every = np.arange(n)
    v_full = u(every)
    return np.array([v_full - u(np.delete(every, i)) for i in range(n)]), v_full


# --- KNN-Shapley -------------------------------------------------------------------------------


def distances(x: np.ndarray, x_test: np.ndarray, metric: str) -> np.ndarray:
    """(n_test, n) distances: ``euclidean`` or ``cosine`` (1 - cosine similarity)."""
    if metric == "cosine":
        a = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        b = x_test / np.maximum(np.linalg.norm(x_test, axis=1, keepdims=True), 1e-12)
        return 1.0 - b @ a.T
    if metric == "euclidean":
        sq = (x_test ** 2).sum(1)[:, None] + (x ** 2).sum(1)[None, :] - 2.0 * x_test @ x.T
        return np.sqrt(np.maximum(sq, 0.0))
    raise ValueError(f"distance must be 'euclidean' or 'cosine', got {metric!r}")


def knn_shapley(dist: np.ndarray, y: np.ndarray, y_test: np.ndarray, k: int) -> np.ndarray:
    """Exact Shapley values of the KNN utility, averaged over test points (Jia et al. 2019,
    Theorem 1). ``dist``: (n_test, n); ties in distance are ordered by index."""
    n_test, n = dist.shape
    order = np.argsort(dist, axis=1, kind="stable")
    match = (y[order] == y_test[:, None]).astype(np.float64)           # sorted: closest first
    i = np.arange(1, n, dtype=np.float64)                               # ranks 1 .. n-1
    step = (match[:, :-1] - match[:, 1:]) * np.minimum(k, i) / (k * i)  # s_i - s_{i+1}
    s = np.empty((n_test, n))
    s[:, -1] = match[:, -1] / n
    s[:, :-1] = s[:, -1:] + np.cumsum(step[:, ::-1], axis=1)[:, ::-1]
    values = np.empty((n_test, n))
    np.put_along_axis(values, order, s, axis=1)
    return values.mean(axis=0)


def knn_utility(dist_row: np.ndarray, y: np.ndarray, y_test: int, k: int, subset: Sequence[int]) -> float:
    """The KNN utility of one test point on a subset (for brute-force checks)."""
    idx = sorted(subset, key=lambda j: (dist_row[j], j))[:k]
    return sum(float(y[j] == y_test) for j in idx) / k


def exact_shapley(v: Callable[[tuple[int, ...]], float], n: int) -> np.ndarray:
    """Shapley values by enumerating every subset (for tests on n <= ~10)."""
    from itertools import combinations

    cache: dict[tuple[int, ...], float] = {}

    def val(s: tuple[int, ...]) -> float:
        if s not in cache:
            cache[s] = v(s)
        return cache[s]

    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            w = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for s in combinations(others, size):
                phi[i] += w * (val(tuple(sorted((*s, i)))) - val(s))
    return phi
