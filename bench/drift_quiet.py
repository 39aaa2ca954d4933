"""False alarms of the whole drift monitor on market streams without a change, as the pipeline runs it.

Seeded synthetic trade streams (connectors.synth, no change injected; 6,000 ticks each) go through the
worker's own partition pipeline with its default settings (features, the default ensemble, horizon 5,
drift response off so that models are not changed by the alerts being counted, and every channel).
Every FIRING alert at or above ``--severity`` is a false alarm. Prints one line per seed and a
RESULT line with the number of seeds that raised any.

Usage: python bench/drift_quiet.py [--seeds 8] [--ticks 6000] [--severity HIGH] [--variance-test cusum]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from common import pin_one_core, result

from agents.app import pipeline_config
from agents.settings import Settings
from connectors.synth import generate
from streams.drift import SEVERITIES
from streams.drift.config import VARIANCE_TESTS
from streams.pipeline import PartitionPipeline, PipelineConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--ticks", type=int, default=6000)
    parser.add_argument("--severity", default="HIGH", choices=SEVERITIES)
    parser.add_argument("--variance-test", default=None, choices=VARIANCE_TESTS,
                        help="the variance channel's test (default: the settings', LIVELEARN_DRIFT_VARIANCE_TEST)")
    args = parser.parse_args()
    pin_one_core()
    defaults = pipeline_config(Settings.from_env())
    drift = dataclasses.replace(defaults.drift, variance_test=args.variance_test or defaults.drift.variance_test)
    config = PipelineConfig(**{**defaults.__dict__, "drift_response": False, "drift": drift})
    floor = SEVERITIES.index(args.severity)
    noisy_seeds, total = 0, 0
    by_kind: dict[str, int] = {}
    for seed in range(args.seeds):
        pipeline = PartitionPipeline(config)
        alarms = []
        started = time.perf_counter()
        for tick in generate(args.ticks, seed=seed):
            alerts = [o.record for o in pipeline.on_tick(tick).records if o.stage == "alerts"]
            alarms += [a for a in alerts if a["status"] == "FIRING" and SEVERITIES.index(a["severity"]) >= floor]
        noisy_seeds += bool(alarms)
        total += len(alarms)
        for alarm in alarms:
            by_kind[alarm["kind"]] = by_kind.get(alarm["kind"], 0) + 1
        described = ", ".join(f"{a['kind']} {a['severity']} {a['test_name']} {'/'.join(a['affected_features'][:3])} "
                              f"at tick {(a['created_time_ms'] - 1_700_000_000_000) // 1000}" for a in alarms)
        print(f"seed {seed}: {len(alarms)} alert(s) >= {args.severity} ({time.perf_counter() - started:.1f} s)"
              f"{': ' + described if described else ''}", flush=True)
    print(f"{noisy_seeds} of {args.seeds} no-change streams raised an alert >= {args.severity}; by kind: {by_kind}")
    result("drift_quiet", seeds=args.seeds, ticks=args.ticks, severity=args.severity, seeds_with_alerts=noisy_seeds,
           alerts=total, alerts_by_kind=by_kind, variance_test=drift.variance_test, alpha=config.drift.alpha,
           current_window=config.drift.current_window, check_every=config.drift.check_every)


if __name__ == "__main__":
    main()
