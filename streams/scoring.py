"""Proper scores of probability forecasts, skill against no-skill references, and its uncertainty.

One log-loss for the whole project (:func:`log_loss`, probabilities clamped to ``[1e-15, 1 - 1e-15]``
as River's ``metrics.LogLoss`` does); the Brier score; expected calibration error over ten equal-width
bins.

Skill of a model against a reference (the running prior, or the constant 0.5) on log-loss is
``1 - L_model / L_reference`` over the same outcomes: 0 is no skill, 1 a perfect forecast, below 0
worse than the reference. Its interval must respect that forecasts whose horizons overlap have
correlated outcomes (the returns of ``t -> t+H`` and ``t+1 -> t+1+H`` share ``H - 1`` steps), so the
outcomes are grouped in consecutive blocks of at least ``4 H`` (batch means): blocks that long are
nearly independent, and the skill, a ratio of two sums, gets the delta-method standard error of a
ratio estimator over blocks,

    se(s)^2 = J / (J - 1) * sum_j (a_j - r b_j)^2 / B^2,    r = A / B,

with ``a_j, b_j`` the block sums of the model's and the reference's losses and ``A, B`` their totals;
the interval is ``s -/+ t_{0.975, J-1} se``. Outcomes that matured at one event (every forecast
waiting for the next change of the mid when it changes: on a quiet book, dozens at once with one
label) are never split between blocks, however long that makes a block: a fixed length would count
one event's evidence as several nearly independent blocks and give an interval far too narrow.
:class:`BlockedScores` keeps the block sums as outcomes arrive (merging neighbours pairwise beyond
``MAX_BLOCKS``, so memory stays bounded), which is what a performance record and ``livelearn
evaluate`` report.

>>> scores = BlockedScores(("model", "prior"), block=4)
>>> for i in range(400):
...     y = i % 2
...     scores.add({"model": 0.8 if y else 0.2, "prior": 0.5}, y)
>>> s, low, high = scores.skill("model", "prior")
>>> round(s, 3), low <= s <= high
(0.678, True)
"""

from __future__ import annotations

import functools
import math
from collections import deque

from scipy import stats

EPS = 1e-15
_ONE_MINUS_EPS = 1.0 - EPS
MAX_BLOCKS = 512
CALIBRATION_BINS = 10


def log_loss(p_up: float, y: int) -> float:
    """Log-loss of a probability of up for the outcome ``y``; as River's ``metrics.LogLoss``, the
    probability of up is clamped to ``[1e-15, 1 - 1e-15]`` before its complement is taken."""
    p_up = min(max(p_up, EPS), 1.0 - EPS)
    return -math.log(p_up if y == 1 else 1.0 - p_up)


def brier(p_up: float, y: int) -> float:
    return (p_up - y) ** 2


class CalibrationBins:
    """Counts, forecast sums and outcome sums over equal-width bins of the forecast, kept as outcomes
    arrive: the expected calibration error and a reliability diagram without keeping every pair (a day
    of ticks is millions of them).

    >>> bins = CalibrationBins()
    >>> for p, y in ((0.15, 0), (0.15, 1), (0.9, 1)):
    ...     bins.add(p, y)
    >>> round(bins.error(), 4), [b["n"] for b in bins.table() if b["n"]]
    (0.2667, [2, 1])
    """

    __slots__ = ("counts", "forecast", "observed")

    def __init__(self, bins: int = CALIBRATION_BINS):
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.counts = [0] * bins
        self.forecast = [0.0] * bins
        self.observed = [0.0] * bins

    def add(self, p: float, y: int) -> None:
        i = min(int(p * len(self.counts)), len(self.counts) - 1)
        self.counts[i] += 1
        self.forecast[i] += p
        self.observed[i] += y

    def merge(self, other: CalibrationBins) -> None:
        if len(other.counts) != len(self.counts):
            raise ValueError(f"cannot merge {len(other.counts)} bins into {len(self.counts)}")
        for i in range(len(self.counts)):
            self.counts[i] += other.counts[i]
            self.forecast[i] += other.forecast[i]
            self.observed[i] += other.observed[i]

    def error(self) -> float:
        """Weighted mean |mean forecast - frequency| over the bins (NaN before any outcome)."""
        n = sum(self.counts)
        return sum(abs(f - o) for f, o in zip(self.forecast, self.observed, strict=True)) / n if n else float("nan")

    def table(self) -> list[dict]:
        bins = len(self.counts)
        return [{"low": i / bins, "high": (i + 1) / bins, "n": c, "forecast": self.forecast[i] / c if c else None,
                 "observed": self.observed[i] / c if c else None} for i, c in enumerate(self.counts)]


class RollingScore:
    """Accuracy and log-loss over the last ``window`` outcomes."""

    __slots__ = ("window", "hits", "losses", "hit_sum", "loss_sum")

    def __init__(self, window: int = 500):
        self.window = window
        self.hits: deque[int] = deque()
        self.losses: deque[float] = deque()
        self.hit_sum = 0
        self.loss_sum = 0.0

    def add(self, p_up: float, y: int) -> float:
        hit = 1 if (p_up > 0.5) == (y == 1) else 0
        # log_loss written out: the members' scores take ten of these a vector, and the call was a third
        # of the time (tests/unit/test_learning.py holds the two to the same bits).
        clamped = EPS if p_up < EPS else _ONE_MINUS_EPS if p_up > _ONE_MINUS_EPS else p_up
        loss = -math.log(clamped if y == 1 else 1.0 - clamped)
        hits, losses = self.hits, self.losses
        hits.append(hit)
        losses.append(loss)
        self.hit_sum += hit
        self.loss_sum += loss
        if len(hits) > self.window:
            self.hit_sum -= hits.popleft()
            self.loss_sum -= losses.popleft()
        return loss

    @property
    def n(self) -> int:
        return len(self.hits)

    @property
    def accuracy(self) -> float:
        return self.hit_sum / len(self.hits) if self.hits else float("nan")

    @property
    def log_loss(self) -> float:
        return self.loss_sum / len(self.losses) if self.losses else float("nan")


class MemberScore(RollingScore):
    """Rolling scores plus cumulative ones since the model started (what a performance record reports).

    Cumulative accuracy and log-loss follow River's ``metrics.Accuracy`` and ``metrics.LogLoss``; the
    Brier score measures calibration; ``captured_return`` is the mean realised return of taking the
    predicted direction (long when up, short when down), over outcomes that have a return.
    ``return_mae`` is the mean absolute error of the return a probability implies,
    ``(2 p - 1) * typical_move`` (``typical_move``: the symbol's recent mean absolute realised return,
    passed in by the learner), against the realised return.
    """

    __slots__ = ("total", "total_hits", "total_loss", "total_brier", "captured", "captured_n", "abs_error")

    def __init__(self, window: int = 500):
        super().__init__(window)
        self.total = self.total_hits = self.captured_n = 0
        self.total_loss = self.total_brier = self.captured = self.abs_error = 0.0

    def add(self, p_up: float, y: int, realised_return: float | None = None, typical_move: float = 0.0) -> float:
        up = p_up > 0.5
        loss = super().add(p_up, y)
        self.total += 1
        self.total_hits += up == (y == 1)
        self.total_loss += loss
        self.total_brier += (p_up - y) ** 2  # brier(p_up, y), without a call (ten a vector)
        if realised_return is not None:
            self.captured += realised_return if up else -realised_return
            self.abs_error += abs((2.0 * p_up - 1.0) * typical_move - realised_return)
            self.captured_n += 1
        return loss

    def summary(self) -> dict:
        n = self.total
        return {
            "n": n,
            "accuracy": self.total_hits / n if n else None,
            "log_loss": self.total_loss / n if n else None,
            "brier": self.total_brier / n if n else None,
            "rolling_accuracy": self.accuracy if self.hits else None,
            "rolling_log_loss": self.log_loss if self.hits else None,
            "captured_return": self.captured / self.captured_n if self.captured_n else None,
            "return_mae": self.abs_error / self.captured_n if self.captured_n else None,
        }


@functools.lru_cache(maxsize=256)
def _t975(df: int) -> float:
    """Student's t 97.5% quantile (scipy's ppf costs ~100 us; block counts repeat)."""
    return float(stats.t.ppf(0.975, df))


class BlockedScores:
    """Per-block log-loss sums of several forecasters over the same outcomes (see the module
    docstring): the skill of one against another with an interval that respects overlapping horizons."""

    def __init__(self, names: tuple[str, ...], block: int = 20):
        if block < 1:
            raise ValueError("block must be >= 1")
        self.names = tuple(names)
        self.block = block
        self.sums: list[list[float]] = []  # per block: a loss sum per name
        self.current = [0.0] * len(self.names)
        self.in_current = 0
        self.n = 0

    def add(self, probabilities: dict[str, float], y: int, hold: bool = False) -> None:
        """One outcome's losses. ``hold``: more outcomes that matured at the same event follow, so the
        block stays open however full it is until :meth:`settle` (they share that event, often their
        label too, and a boundary between them would count one piece of evidence in two blocks)."""
        current = self.current
        for i, name in enumerate(self.names):
            current[i] += log_loss(probabilities[name], y)
        self.in_current += 1
        self.n += 1
        if not hold:
            self.settle()

    def settle(self) -> None:
        """Close the current block if it is full (after outcomes added with ``hold``)."""
        if self.in_current >= self.block:
            current = self.current
            self.sums.append(current)
            self.current = [0.0] * len(self.names)
            self.in_current = 0
            if len(self.sums) > MAX_BLOCKS:
                self._merge()

    def coarsen(self, at_least: int) -> None:
        """Blocks of at least ``at_least`` outcomes from now on, complete ones merged pairwise (the
        length doubling) until they are: for a learner whose outcomes lag further behind their
        forecasts than its horizon in vectors said (a horizon in seconds at book tickers: ~150)."""
        while self.block < at_least:
            self._merge()

    def _merge(self) -> None:
        sums = self.sums
        self.sums = [[a + b for a, b in zip(sums[i], sums[i + 1], strict=True)]
                     for i in range(0, len(sums) - 1, 2)] + ([sums[-1]] if len(sums) % 2 else [])
        self.block *= 2

    def _complete(self) -> dict:
        """Per-name sums over the complete blocks, and per pair the interval's half-width, kept until a
        block completes or blocks merge: a performance record and the metrics ask for the skill of
        every member against two references every few dozen ticks, and recomputing the sums over up
        to 512 blocks each time held the event loop for milliseconds. The cached values are computed
        exactly as before (the same sums in the same order), so the figures do not change."""
        key = (len(self.sums), self.block)
        cache = self.__dict__.get("_cache")
        if cache is None or cache["key"] != key:
            cache = self._cache = {"key": key, "half": {},
                                   "sums": [sum(block[i] for block in self.sums) for i in range(len(self.names))]}
        return cache

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_cache", None)  # derived; checkpoints keep the blocks only
        return state

    def totals(self) -> dict[str, float]:
        complete = self._complete()["sums"]
        out = [complete[i] + self.current[i] for i in range(len(self.names))]
        return dict(zip(self.names, out, strict=True))

    def skill(self, model: str, reference: str) -> tuple[float, float, float]:
        """``(skill, low, high)``: log-loss skill of ``model`` against ``reference`` with its 95%
        interval (NaN bounds with fewer than three complete blocks)."""
        i, j = self.names.index(model), self.names.index(reference)
        totals = self.totals()
        if totals[reference] <= 0:
            return float("nan"), float("nan"), float("nan")
        skill = 1.0 - totals[model] / totals[reference]
        blocks = len(self.sums)
        if blocks < 3:
            return skill, float("nan"), float("nan")
        cache = self._complete()
        half = cache["half"].get((i, j))
        if half is None:
            a_total, b_total = cache["sums"][i], cache["sums"][j]
            ratio = a_total / b_total
            spread = sum((block[i] - ratio * block[j]) ** 2 for block in self.sums)
            se = math.sqrt(blocks / (blocks - 1) * spread) / b_total
            half = cache["half"][(i, j)] = _t975(blocks - 1) * se
        return skill, skill - half, skill + half
