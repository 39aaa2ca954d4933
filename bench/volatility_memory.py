"""Long memory of one-minute volatility, and what it does to the variance channel's test (issue #15).

The variance channel (streams.drift.checks.VarianceCheck) compares the mean log absolute deviation of
recent returns with that of a 500-event reference, its variance widened for serial correlation by
Bartlett weights up to lag 62 (``Channel._pool``). This measures, on each run of consecutive real
kline days, whether that variance describes the data:

* the autocorrelation of the returns' log absolute deviations, each return divided by its hour's mean
  absolute return over the series (the intraday profile; the channel learns its own from seven days),
  floored at a tenth of the mean deviation as the channel's ``scale_floor`` is, at lags 1, 60, 200, 500;
* ``ratio_by_gap``: the variance of (mean of a 200-event window - mean of the 500-event reference
  that ended ``gap`` - 200 events before the window began), over every such pair 20 events apart in
  the series, divided by the variance the test assumes for them (the two windows' variances over
  their lengths, times the Bartlett factor of the series' own autocorrelations). About 1 where the
  test holds its level; above it, the test reads the wandering of volatility as rises and falls.
  The pairs overlap (windows of 200 and 500 events, 20 apart): on the two shipped days the figure is
  noise; it means something on weeks and months.

Measured 2026-12-04 with ``--data`` on sixteen real months of seven USDT pairs (not shipped;
docs/STATUS.md, #15): the autocorrelation at lag 500 was 0.012-0.139 (-0.004 on one month), and the
ratio 0.57-1.30 for a reference that ended as the window began (gap 200), 1.28-2.88 a day older
(gap 1440), 1.62-3.42 two days older; on the three March 2023 weeks of Binance.US's BTC pairs 0.68-1.45,
1.46-2.12 and 1.65-2.36.

Usage: python bench/volatility_memory.py [--data PATH...]  (the shipped runs of days by default)
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from common import real_data, result

from connectors.recorded import merged
from streams.drift.config import DriftConfig
from streams.drift.correlation import MIN_THINNED, autocorrelations, bartlett_inflation

LAGS = (1, 60, 200, 500)
CURRENT = 200
GAPS = (200, 1440, 2880)
EVERY = 20


def log_scales(times_ms: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Log absolute deviations of one-bar log returns from their median, each return divided by its
    UTC hour's mean absolute return over the series, floored at a tenth of the mean deviation."""
    returns = np.diff(np.log(closes))
    hours = (times_ms[1:] // 3_600_000) % 24
    sizes = np.abs(returns)
    profile = np.ones(24)
    for hour in range(24):
        seen = sizes[hours == hour]
        if seen.shape[0] and seen.mean() > 0:
            profile[hour] = seen.mean()
    profile /= profile.mean()
    scaled = returns / profile[hours]
    deviations = np.abs(scaled - np.median(scaled))
    return np.log(deviations + 0.1 * deviations.mean())


def aged_reference_ratios(scales: np.ndarray, reference: int, max_lag: int) -> tuple[dict[int, float], dict[int, int]]:
    """Per gap that fits the series: empirical over assumed variance of (window mean - reference mean),
    and how many pairs it was measured on."""
    factor = float(bartlett_inflation(autocorrelations(scales[:, None], max_lag))[0])
    assumed = float(scales.var()) * factor * (1.0 / reference + 1.0 / CURRENT)
    sums = np.concatenate([[0.0], np.cumsum(scales)])
    ratios, pairs = {}, {}
    for gap in GAPS:
        ends = np.arange(reference + gap, scales.shape[0] + 1, EVERY)
        if ends.shape[0] < 20:
            continue
        starts = ends - gap
        difference = (sums[ends] - sums[ends - CURRENT]) / CURRENT - (sums[starts] - sums[starts - reference]) / reference
        ratios[gap], pairs[gap] = float(difference.var() / assumed), int(ends.shape[0])
    return ratios, pairs


def measure(name: str, paths: list) -> dict:
    bars = [(item.tick["event_time_ms"], item.tick["price"]) for item in merged(paths)
            if item.tick is not None and item.tick["kind"] == "KLINE"]
    times, closes = (np.array(column) for column in zip(*bars, strict=True))
    scales = log_scales(times, closes)
    config = DriftConfig()
    max_lag = max(1, config.window // MIN_THINNED)
    correlation = autocorrelations(scales[:, None], max(LAGS))[:, 0]
    ratios, pairs = aged_reference_ratios(scales, config.window, max_lag)
    line = ", ".join(f"gap {gap}: {ratio:.2f} ({pairs[gap]} pairs)" for gap, ratio in ratios.items())
    print(f"{name}: {scales.shape[0]} returns; autocorrelation at lag 500 {correlation[500]:.3f}; "
          f"empirical / assumed variance {line}", flush=True)
    fields = {"series": name, "returns": int(scales.shape[0]), "max_lag": max_lag,
              "autocorrelation": {str(lag): round(float(correlation[lag]), 4) for lag in LAGS},
              "ratio_by_gap": {str(gap): round(ratio, 3) for gap, ratio in ratios.items()},
              "pairs_by_gap": {str(gap): n for gap, n in pairs.items()}}
    result("volatility_memory", **fields)
    return fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", metavar="PATH", help="files or folders of real kline dumps")
    args = parser.parse_args()
    runs = [(name, paths) for name, paths in real_data(args.data).consecutive_days()]
    if not runs:
        parser.error("no run of consecutive one-minute kline days in the data")
    measured = [measure(name, paths) for name, paths in runs]
    spread = {}
    for gap in GAPS:
        values = [m["ratio_by_gap"][str(gap)] for m in measured if str(gap) in m["ratio_by_gap"]]
        if values:
            spread[str(gap)] = [min(values), max(values)]
    tail = [m["autocorrelation"]["500"] for m in measured]
    result("volatility_memory_summary", series=len(measured), ratio_range_by_gap=spread,
           autocorrelation_500_range=[min(tail), max(tail)] if all(math.isfinite(t) for t in tail) else None)


if __name__ == "__main__":
    main()
