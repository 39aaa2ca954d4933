"""Exactly-once outputs (issue #19): with LIVELEARN_PROCESSING_GUARANTEE=exactly_once, two SIGKILLs and
one SIGTERM mid-stream, each followed by a restart, leave a read_committed consumer (librdkafka's
default) with every prediction and outcome exactly once, equal to the same pipeline run in process."""

from __future__ import annotations

import signal

import pytest

from schemas.codec import AvroCodec
from tests.conftest import livelearn
from tests.integration.test_broker_outage_kafka import FILES, TICKS
from tests.integration.test_restart import wait_for_predictions
from tests.kafka_io import read_topic

pytestmark = pytest.mark.integration


def expected(settings) -> dict[str, dict[str, dict]]:
    from agents.app import pipeline_config
    from connectors.replay import read_file
    from streams.pipeline import PartitionPipeline

    out: dict[str, dict[str, dict]] = {"predictions": {}, "outcomes": {}}
    for path in FILES:
        pipeline = PartitionPipeline(pipeline_config(settings))
        for item in read_file(path):
            for output in pipeline.on_tick(item.tick).records:
                if output.stage in out:
                    record = {k: v for k, v in output.record.items() if k != "latency_ms"}
                    out[output.stage][record["prediction_id"]] = record
    return out


def committed(env: dict, stage: str, schema: str) -> list[dict]:
    codec = AvroCodec.for_topic_schema(schema)
    return [{k: v for k, v in codec.decode(m.value()).items() if k != "latency_ms"}
            for m in read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"] + stage, idle=4.0,
                                timeout=120)]


def test_crashes_and_a_stop_leave_every_output_exactly_once(worker_factory, pipeline_env):
    from agents.settings import Settings

    settings = {"LIVELEARN_PROCESSING_GUARANTEE": "exactly_once", "LIVELEARN_MEMBERS": "logreg",
                "LIVELEARN_MODEL_CHECKPOINT_EVENTS": "150", "LIVELEARN_LOG_LEVEL": "info"}
    env = {**pipeline_env, **settings}
    worker = worker_factory(settings).start()
    assert livelearn("replay", *map(str, FILES), "--quiet", env=env, timeout=120).returncode == 0
    for at_least, how in ((500, "kill"), (1300, "kill"), (2000, "term")):
        assert wait_for_predictions(env, at_least, 240) >= at_least
        if how == "kill":
            worker.stop(kill=True)
        else:
            worker.process.send_signal(signal.SIGTERM)
            assert worker.process.wait(30) == 0
        worker = worker_factory(settings).start(timeout=120)
    assert wait_for_predictions(env, TICKS, 300) >= TICKS
    worker.stop()

    want = expected(Settings.from_env(env))
    predictions = committed(env, "predictions", "prediction")
    outcomes = committed(env, "outcomes", "feedback")
    print(f"exactly-once: {len(predictions)} predictions ({len({p['prediction_id'] for p in predictions})} "
          f"distinct), {len(outcomes)} outcomes")
    assert len(predictions) == TICKS
    assert {p["prediction_id"]: p for p in predictions} == want["predictions"]
    assert len(outcomes) == len(want["outcomes"])
    assert {o["prediction_id"]: o for o in outcomes} == want["outcomes"]
