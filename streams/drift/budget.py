"""Drift alerts of a run against their false-alarm budget: FIRING alerts per symbol and channel, per 10k
vectors, with an exact Poisson interval, beside the bound each channel exports
(``livelearn_drift_false_alarms_per_10k_bound``).

Why: the bound is what a subscriber budgets for, and it is a rate, so a run says whether it held only
as a rate over the vectors the symbol had, with an interval: one alarm in a day of one-minute klines
(1,440 vectors) is 6.9 per 10k, a rate no single day can rule in or out. ``livelearn evaluate`` prints
it under each skill table, so history replayed in a backtest shows its alert budget beside its skill.

A plain class fed a partition pipeline's steps (:class:`streams.pipeline.Step`), as
:class:`streams.evaluation.RunScorer` is, or the records a run published (read back from its topics):

>>> budget = AlertBudget({"FEATURE": 0.4, "VARIANCE": 0.4})
>>> budget.count("BTCUSDT", vectors=30_000, alerts={"VARIANCE": 3})
>>> print(budget.lines()[0])
BTCUSDT: drift alerts over 30,000 vectors, per 10k (exact 95% interval; bound 0.4 a channel): FEATURE 0, VARIANCE 3 = 1.00 [0.21, 2.92]
>>> budget.summary()["BTCUSDT"]["VARIANCE"]["within_twice_the_bound"]
False
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any


def poisson_interval(count: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) interval for the mean of a Poisson count.

    >>> [round(x, 3) for x in poisson_interval(0)], [round(x, 2) for x in poisson_interval(3)]
    ([0.0, 3.689], [0.62, 8.77])
    """
    from scipy.stats import chi2

    tail = (1 - confidence) / 2
    low = 0.0 if count == 0 else float(chi2.ppf(tail, 2 * count)) / 2
    return low, float(chi2.ppf(1 - tail, 2 * count + 2)) / 2


class AlertBudget:
    """FIRING alerts and vectors per symbol, against ``bounds`` (alarms per 10k vectors by channel)."""

    def __init__(self, bounds: dict[str, float]):
        if not bounds or any(not b > 0 for b in bounds.values()):
            raise ValueError("bounds: one positive rate per 10k vectors for each channel")
        self._bounds = dict(bounds)
        self._vectors: Counter[str] = Counter()
        self._alerts: dict[str, Counter[str]] = defaultdict(Counter)

    @property
    def bounds(self) -> dict[str, float]:
        return dict(self._bounds)

    def add_step(self, step: Any) -> None:
        """A step's predicted vector and its FIRING alerts, and those of the held ticks it released."""
        for output in step.records:
            self.add_record(output.stage, output.record)
        for released, _ in step.released:
            self.add_step(released)

    def add_record(self, stage: str, record: dict[str, Any]) -> None:
        """A published record: a prediction is one vector of its symbol (a vector is predicted once, with
        one record), a FIRING alert one alert of its channel; other records count nothing. A run read
        back from its topics counts as its steps did."""
        if stage == "predictions":
            self._vectors[record["symbol"]] += 1
        elif stage == "alerts" and record["status"] == "FIRING":
            self._alerts[record["symbol"]][record["kind"]] += 1

    def count(self, symbol: str, vectors: int = 0, alerts: dict[str, int] | None = None) -> None:
        """Vectors and alerts counted elsewhere (another run's, when runs are pooled)."""
        self._vectors[symbol] += vectors
        self._alerts[symbol].update(alerts or {})

    def merge(self, other: AlertBudget) -> None:
        for symbol, vectors in other._vectors.items():
            self.count(symbol, vectors, other._alerts.get(symbol))

    def of(self, symbols: set[str]) -> AlertBudget:
        """The budget of ``symbols`` only."""
        kept = AlertBudget(self._bounds)
        for symbol in symbols & (set(self._vectors) | set(self._alerts)):
            kept.count(symbol, self._vectors[symbol], self._alerts.get(symbol))
        return kept

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per symbol and channel: alerts, per 10k vectors with its interval, the bound, and whether the
        rate is within twice the bound (the rule the drift benchmark applies)."""
        out: dict[str, dict[str, Any]] = {}
        for symbol in sorted(set(self._vectors) | set(self._alerts)):
            vectors = self._vectors[symbol]
            rows: dict[str, Any] = {"vectors": vectors}
            for channel, bound in self._bounds.items():
                alerts = self._alerts[symbol][channel]
                low, high = poisson_interval(alerts)
                scale = 10_000 / vectors if vectors else float("nan")
                rows[channel] = {"alerts": alerts, "per_10k": alerts * scale,
                                 "interval_95_per_10k": [low * scale, high * scale], "bound_per_10k": bound,
                                 "within_twice_the_bound": alerts * scale <= 2 * bound if vectors else None}
            out[symbol] = rows
        return out

    def lines(self) -> list[str]:
        """One line per symbol."""
        bounds = sorted(set(self._bounds.values()))
        said = f"bound {bounds[0]:g} a channel" + "".join(
            f", {channel} {b:g}" for channel, b in self._bounds.items() if b != bounds[0])
        out = []
        for symbol, rows in self.summary().items():
            cells = []
            for channel in self._bounds:
                row = rows[channel]
                cells.append(f"{channel} {row['alerts']}" if not row["alerts"] else
                             f"{channel} {row['alerts']} = {row['per_10k']:.2f} "
                             f"[{row['interval_95_per_10k'][0]:.2f}, {row['interval_95_per_10k'][1]:.2f}]")
            out.append(f"{symbol}: drift alerts over {rows['vectors']:,} vectors, per 10k (exact 95% interval; "
                       f"{said}): " + ", ".join(cells))
        return out
