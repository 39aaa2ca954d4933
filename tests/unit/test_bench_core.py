"""bench/core.py's second day, run once on the shipped kline day: the figures it prints are the day's
bars again, timed after a first day on the same state (no test runs the whole benchmark: minutes)."""

from __future__ import annotations

import json
import time

from tests.bench_modules import bench_module


def test_the_second_day_times_every_vector_of_the_repeated_day_after_the_first(capsys):
    core = bench_module("core")
    from agents.app import pipeline_config
    from agents.settings import Settings
    from connectors.recorded import read_file

    name = core.FILES[0]
    ticks = [item.tick for item in read_file(core.SHARED / name) if item.tick is not None]
    settings = Settings()
    core.second_day(name, settings, pipeline_config(settings), ticks, 20.0, 1, int(time.time() * 1000))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("RESULT ")]
    measured = json.loads(lines[-1][len("RESULT "):])
    assert measured["bench"] == "core_second_day" and measured["vectors"] == len(ticks) == 1440
    assert set(measured["us_per_vector"]) == {"pipeline", "learner", "drift"}
    assert all(us > 0 for us in measured["us_per_vector"].values())
    assert measured["pipeline_over_river_lr"] == round(measured["us_per_vector"]["pipeline"] / 20.0, 1)
