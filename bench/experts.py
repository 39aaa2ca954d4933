"""Inside the ensemble: every expert's log-loss, and where the ensemble loses to its fast mixture.

The skill table (bench/skill.py, ``livelearn evaluate``) scores the ensemble, its members and the
references. This opens the mixture (streams.ensemble) on the same run: the log-loss of each of its
experts (the no-skill references, each member raw and recalibrated, the fast mixture) over the
forecasts the slots served, and the ensemble's loss minus the fast mixture's, split by how many
outcomes the serving slot had learned before and by fifth of the run. With hundreds of forecasts
outstanding (a horizon in seconds at book tickers) every slot must earn the evidence for the fast
mixture on its own: this shows how much that costs and where (docs/STATUS.md, #14).

Each file runs through the worker's own partition pipeline in process (``livelearn evaluate FILE``),
with the ensemble's ``learn`` observed, not changed. Defaults: the two spot captures, mid one second
ahead and next mid change, at book tickers. Prints a table and one ``RESULT`` line per case. Under a
minute a case here (the BTCUSDT capture one second ahead: 42 s).

The skill gate (streams.skill_gate) is off here unless ``--gate``: it changes what is published, not
how the slots learn, and the slots are what this measures.

Usage: python bench/experts.py [--quick] [--gate] [--data PATH...]   (--quick: the BTCUSDT capture one
second ahead only)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections import defaultdict
from pathlib import Path

from common import real_data, result

import streams.ensemble as ensemble_module
from agents.settings import Settings
from cli.evaluate import run_file

EXPERIENCE = ((0, 3), (3, 10), (10, 30), (30, 100), (100, None))


class Observer:
    """Wraps :meth:`streams.ensemble.Ensemble.learn` for one run: records, per slot-served forecast, every
    expert's loss, the ensemble's, and the serving slot's prior outcomes."""

    def __init__(self):
        self.losses: dict[str, float] = defaultdict(float)
        self.rows: list[tuple[int, float]] = []  # (slot's outcomes before, ensemble minus fast)
        self.learned: dict[tuple[int, int], int] = defaultdict(int)
        self.original = ensemble_module.Ensemble.learn

    def __enter__(self) -> Observer:
        original, observer = self.original, self

        def learn(mixture, forecast, y, weight=1.0, lag=1):
            if forecast.slot >= 0:
                observer.observe(mixture, forecast, y)
            return original(mixture, forecast, y, weight, lag)

        # Observed, not replaced: the wrapper calls the original learn and returns what it returns.
        ensemble_module.Ensemble.learn = learn  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc) -> None:
        ensemble_module.Ensemble.learn = self.original  # type: ignore[method-assign]

    def observe(self, mixture, forecast, y: int) -> None:
        def loss(p: float) -> float:
            return -math.log(p if y == 1 else 1.0 - p)

        for name, p in forecast.experts.items():
            self.losses[name] += loss(p)
        ensemble = loss(forecast.p_up)
        self.losses["ensemble"] += ensemble
        key = (id(mixture), forecast.slot)
        self.rows.append((self.learned[key], ensemble - loss(forecast.experts[ensemble_module.FAST])))
        self.learned[key] += 1


def run_case(path: Path, label: str, settings: Settings) -> None:
    started = time.perf_counter()
    with Observer() as seen:
        run_file(path, settings)
    n = len(seen.rows)
    case = f"{path.name} {label}"
    if not n:
        print(f"== {case}: no scored outcome")
        result("experts", case=case, outcomes=0)
        return
    experts = {name: total / n for name, total in sorted(seen.losses.items(), key=lambda kv: kv[1])}
    print(f"== {case}: {n} scored forecasts served by a slot; log-loss of each expert")
    for name, value in experts.items():
        print(f"  {name:<14} {value:.4f}")
    gap = sum(d for _, d in seen.rows)
    print(f"  ensemble minus fast mixture: {gap:.1f} nats ({gap / n:+.4f} an outcome); by the serving slot's "
          "outcomes learned before:")
    by_experience = {}
    for low, high in EXPERIENCE:
        part = [d for k, d in seen.rows if k >= low and (high is None or k < high)]
        span = f"{low}+" if high is None else f"{low}-{high - 1}"
        by_experience[span] = [len(part), round(sum(part), 1)]
        print(f"    {span:>7}: {len(part):>6} forecasts, {sum(part):8.1f} nats")
    fifths = [round(sum(d for _, d in seen.rows[i * n // 5:(i + 1) * n // 5]), 1) for i in range(5)]
    print(f"  by fifth of the run: {fifths}")
    result("experts", case=case, outcomes=n, log_loss=experts, ensemble_minus_fast_nats=round(gap, 1),
           by_slot_experience=by_experience, by_fifth=fifths, seconds=round(time.perf_counter() - started, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", nargs="*", help="capture files or folders instead of the shipped ones")
    parser.add_argument("--gate", action="store_true",
                        help="keep the skill gate (off by default: the slots' learning is what this opens up)")
    args = parser.parse_args()
    base = Settings.from_env()
    if not args.gate:
        base = dataclasses.replace(base, skill_gate_alpha="0")
    captures = [p for p in real_data(args.data).captures if "spot_" in p.name or args.data]
    cases = [("mid 1 s ahead at book tickers", dataclasses.replace(base, predict_on="book", horizon_seconds="1")),
             ("next mid change at book tickers", dataclasses.replace(base, predict_on="book", label="next_change"))]
    for label, settings in cases[:1] if args.quick else cases:
        for path in captures[:1] if args.quick else captures:
            run_case(path, label, settings)


if __name__ == "__main__":
    main()
