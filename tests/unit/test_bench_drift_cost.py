"""bench/drift_cost_instructions.py's two loops, run briefly without valgrind, so that the benchmark does
not break unseen (it needs valgrind and minutes, so no test runs it whole)."""

from __future__ import annotations

from tests.bench_modules import bench_module


def test_the_instruction_benchmark_runs_the_channel_and_kswin_on_drift_evals_stream():
    bench = bench_module("drift_cost_instructions")
    matrix = bench.stream(700, 3)
    assert matrix.shape == (700, 3) and bench.stream(700, 3).tolist() == matrix.tolist()  # seeded
    bench.run_channel(700)  # the reference fills at 500 events: a few checks run
    bench.run_kswin(700)
