"""A broker outage is waited out (issue #19), in both processing guarantees: a private local broker is
killed with SIGKILL mid-run and started again 60 s later; the same worker process stays alive
(/healthz) and not ready (/readyz 503) meanwhile, resumes by itself, and its predictions equal those of
the same pipeline run in process (0 lost, 0 different; repeats must be identical, and there are none
in exactly-once mode)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error

import pytest

from agents.app import pipeline_config
from agents.settings import Settings
from connectors.replay import read_file
from schemas.codec import AvroCodec
from streams.pipeline import PartitionPipeline
from tests.conftest import ROOT, livelearn
from tests.integration.test_restart import wait_for_predictions
from tests.kafka_io import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FILES = [ROOT / "data" / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip",
         ROOT / "data" / "binance" / "klines" / "spot" / "ETHUSDT-1m-2022-08-14.zip"]
TICKS = 2880
OUTAGE_S = 60


def expected_predictions(settings: Settings) -> dict[str, dict]:
    out = {}
    for path in FILES:
        pipeline = PartitionPipeline(pipeline_config(settings))
        for item in read_file(path):
            for output in pipeline.on_tick(item.tick).records:
                if output.stage == "predictions":
                    record = {k: v for k, v in output.record.items() if k != "latency_ms"}
                    out[record["prediction_id"]] = record
    return out


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_the_worker_waits_out_a_60_s_broker_outage_and_resumes_by_itself(guarantee, private_broker, worker_factory,
                                                                         pipeline_env):
    settings = {"KAFKA_BOOTSTRAP_SERVERS": private_broker.bootstrap, "LIVELEARN_MEMBERS": "logreg",
                "LIVELEARN_LOG_LEVEL": "info", "LIVELEARN_PROCESSING_GUARANTEE": guarantee}
    env = {**pipeline_env, **settings}
    worker = worker_factory(settings).start(timeout=120)
    assert livelearn("replay", *map(str, FILES), "--quiet", env=env, timeout=120).returncode == 0
    assert wait_for_predictions(env, 800, 240) >= 800

    os.kill(private_broker.pid(), signal.SIGKILL)
    readiness, alive = [], []
    deadline = time.monotonic() + OUTAGE_S
    while time.monotonic() < deadline:
        try:
            readiness.append(worker.get("/readyz")[0])
            alive.append(worker.get("/healthz")[0])
        except (OSError, urllib.error.URLError):
            alive.append(None)
        time.sleep(2.0)
    assert worker.process.poll() is None, worker.log_path.read_text()[-3000:]
    private_broker.up(wait_s=180)

    assert wait_for_predictions(env, TICKS, 300) >= TICKS, worker.log_path.read_text()[-3000:]
    assert worker.process.poll() is None  # the same process resumed
    assert 503 in readiness and set(alive) == {200}
    ready_again = time.monotonic() + 60
    while worker.get("/readyz")[0] != 200 and time.monotonic() < ready_again:
        time.sleep(1.0)
    assert json.loads(worker.get("/readyz")[1])["ready"] is True
    worker.stop()

    codec = AvroCodec.for_topic_schema("prediction")
    got: dict[str, dict] = {}
    repeats = 0
    for message in read_topic(private_broker.bootstrap, env["LIVELEARN_TOPIC_PREFIX"] + "predictions", idle=3.0,
                              timeout=120):
        record = {k: v for k, v in codec.decode(message.value()).items() if k != "latency_ms"}
        repeats += record["prediction_id"] in got
        assert got.setdefault(record["prediction_id"], record) == record  # a repeat is identical
    print(f"{guarantee}, outage {OUTAGE_S} s: readiness codes {sorted(set(readiness))}, predictions {len(got)}, "
          f"repeats {repeats}")
    assert got == expected_predictions(Settings.from_env(env))
    if guarantee == "exactly_once":
        assert repeats == 0
