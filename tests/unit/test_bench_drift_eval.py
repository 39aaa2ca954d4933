"""bench/drift_eval.py measures the drift channel the pipeline runs: its detector must see every event
of a stream, or its table compares KSWIN and ADWIN with a channel that never tests anything."""

from __future__ import annotations

from tests.bench_modules import bench_module


def test_the_benchmarks_livelearn_detector_sees_every_event_and_finds_a_mean_shift():
    """The channel takes events of one event time as one observation (the fills of one order); fed at
    a constant time, as the benchmark once did, it kept the first event of 10,000 and found nothing at
    any alpha of its grid."""
    bench = bench_module("drift_eval")
    stream = bench.scenario("mean_shift", 0, 0.0)
    detector = bench.Ours(0.004)
    alarms = [i for i, x in enumerate(stream) if detector.update(float(x))]
    assert detector.channel.seen == bench.N
    after = [i - bench.CHANGE for i in alarms if bench.CHANGE <= i < bench.CHANGE + bench.HORIZON]
    assert after and after[0] <= 200, alarms
