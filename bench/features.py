"""Feature engine throughput on the shipped real data, side by side in one run:

* the per-tick core (``FeatureEngine.update``),
* the batch path (``update_many``), checked equal to the per-tick output,
* two reimplementations of the seed approach (numpy reductions over a 100-tick deque on every tick):
  ``seed_light``, a hand-written extractor of 17 features with ATR from price differences only (as
  in the CryptoScalp guide's FeatureExtractor), and ``seed_full``, which recomputes this project's whole
  feature set from the 100-tick window on every tick (numpy reductions through ``update_many``).

Prints a table and one ``RESULT`` line. Usage: python bench/features.py [--repeat 3]

One run on 2026-12-07 (21,623 real ticks, one core, best of 3): per tick 52,318 ticks/s, batch 985,397,
``seed_light`` 13,338, ``seed_full`` 891; the batch output equal to the per-tick one (largest difference
1.9e-10 of a feature's scale). Issue #4 asked for 20x the seed approach, quoted at 2.5-3k ticks/s, which
lies between the two reimplementations: the per-tick core is 58.7x ``seed_full`` and 3.9x ``seed_light``
(a few numpy reductions over 100 values cost less than this core's 35 features in pure Python), so
against the light extractor the 20x is not met.
"""

from __future__ import annotations

import argparse
from collections import deque

import numpy as np
from common import SHARED, best_of, pin_one_core, result

from connectors.recorded import read_file
from streams.features import FEATURE_NAMES, FeatureEngine
from streams.features_batch import TickSeries, update_many


class SeedFeatureExtractor:
    """The seed design: keep the last 100 prices/volumes, recompute every feature from them per tick."""

    def __init__(self, window: int = 100):
        self.prices: deque[float] = deque(maxlen=window)
        self.volumes: deque[float] = deque(maxlen=window)

    @staticmethod
    def _ema(values: np.ndarray, span: int) -> float:
        alpha = 2.0 / (span + 1.0)
        weights = (1 - alpha) ** np.arange(len(values))[::-1]
        return float(np.sum(weights * values) / np.sum(weights))

    def update(self, price: float, volume: float) -> dict[str, float]:
        self.prices.append(price)
        self.volumes.append(volume)
        p = np.array(self.prices)
        v = np.array(self.volumes)
        out: dict[str, float] = {}
        if len(p) < 30:
            return out
        returns = np.diff(p) / p[:-1]
        out["ret_1"], out["ret_5"], out["ret_20"] = returns[-1], p[-1] / p[-6] - 1, p[-1] / p[-21] - 1
        out["sma_5"], out["sma_20"] = p[-5:].mean(), p[-20:].mean()
        out["ema_12"], out["ema_26"] = self._ema(p, 12), self._ema(p, 26)
        out["macd"] = out["ema_12"] - out["ema_26"]
        out["volatility_20"] = returns[-20:].std()
        sd = p[-20:].std()
        out["bollinger_pct_b"] = (p[-1] - (out["sma_20"] - 2 * sd)) / (4 * sd) if sd > 0 else 0.5
        diffs = np.diff(p[-15:])
        gains, losses = diffs[diffs > 0].sum() / 14, -diffs[diffs < 0].sum() / 14
        out["rsi_14"] = 100 - 100 / (1 + gains / losses) if losses > 0 else 100.0
        low, high = p[-14:].min(), p[-14:].max()
        out["stoch_k_14"] = 100 * (p[-1] - low) / (high - low) if high > low else 50.0
        out["atr_14"] = np.abs(np.diff(p[-15:])).mean()
        out["momentum_10"], out["roc_10"] = p[-1] - p[-11], 100 * (p[-1] / p[-11] - 1)
        out["volume_ratio_20"] = v[-1] / v[-20:].mean() if v[-20:].mean() > 0 else 1.0
        out["vwap_20"] = float(np.sum(p[-20:] * v[-20:]) / np.sum(v[-20:])) if v[-20:].sum() > 0 else p[-1]
        return out


def load_ticks() -> list[dict]:
    files = sorted((SHARED / "binance" / "klines").rglob("*.zip")) + sorted((SHARED / "binance" / "ws").glob("spot_*.gz"))
    ticks = []
    for path in files:
        ticks += [item.tick for item in read_file(path) if item.tick and item.tick["kind"] != "BOOK_TICKER"]
    return ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pin_one_core()
    ticks = load_ticks()
    by_symbol: dict[str, list[dict]] = {}
    for tick in ticks:
        by_symbol.setdefault(f"{tick['symbol']}-{tick['kind']}-{tick['source']}", []).append(tick)
    groups = list(by_symbol.values())
    series = [TickSeries.from_ticks(group) for group in groups]

    def per_tick():
        for group in groups:
            engine = FeatureEngine()
            update = engine.update
            for tick in group:
                update(tick)

    def batch():
        for s in series:
            update_many(s)

    def seed_light():
        for group in groups:
            extractor = SeedFeatureExtractor()
            for tick in group:
                extractor.update(tick["price"], tick["quantity"])

    seed_sample = [group[:2000] for group in groups]  # the full-recompute path is slow: time a prefix

    def seed_full():
        for group in seed_sample:
            window: deque[dict] = deque(maxlen=100)
            for tick in group:
                window.append(tick)
                update_many(TickSeries.from_ticks(list(window)))

    n = len(ticks)
    t_tick = best_of(per_tick, args.repeat)
    t_batch = best_of(batch, args.repeat)
    t_seed = best_of(seed_light, max(1, args.repeat - 1))
    t_seed_full = best_of(seed_full, 1) * n / sum(len(g) for g in seed_sample)

    # Same output: batch columns against the per-tick vectors.
    worst = 0.0
    for group, s in zip(groups, series, strict=True):
        engine = FeatureEngine()
        vectors = [engine.update(t) for t in group]
        columns = update_many(s)
        for name in FEATURE_NAMES:
            expected = np.array([np.nan if v is None else v["values"].get(name, np.nan) for v in vectors])
            got = columns[name]
            assert np.array_equal(np.isnan(expected), np.isnan(got)), name
            mask = ~np.isnan(expected)
            if mask.any():
                scale = max(np.max(np.abs(expected[mask])), 1e-300)
                worst = max(worst, float(np.max(np.abs(got[mask] - expected[mask])) / scale))
    identical = worst <= 1e-9

    rates = {"per_tick": n / t_tick, "batch": n / t_batch, "seed_light": n / t_seed, "seed_full": n / t_seed_full}
    print(f"{n} real ticks ({len(groups)} series: klines spot+futures, spot trades), one core, best of {args.repeat}")
    print(f"{'path':10s} {'ticks/s':>12s} {'vs seed_light':>14s} {'vs seed_full':>13s}")
    for name, rate in rates.items():
        print(f"{name:10s} {rate:12,.0f} {rate / rates['seed_light']:13.1f}x {rate / rates['seed_full']:12.1f}x")
    print(f"batch vs per-tick: max difference {worst:.1e} of each feature's scale ({'identical' if identical else 'DIFFERENT'})")
    result("features", ticks=n, per_tick_ticks_per_s=round(rates["per_tick"]), batch_ticks_per_s=round(rates["batch"]),
           seed_light_ticks_per_s=round(rates["seed_light"]), seed_full_ticks_per_s=round(rates["seed_full"]),
           per_tick_vs_seed_light=round(rates["per_tick"] / rates["seed_light"], 1),
           per_tick_vs_seed_full=round(rates["per_tick"] / rates["seed_full"], 1),
           batch_vs_seed_full=round(rates["batch"] / rates["seed_full"], 1), batch_equals_per_tick=identical,
           max_relative_difference=worst)


if __name__ == "__main__":
    main()
