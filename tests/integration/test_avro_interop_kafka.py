"""Avro on the wire as the specification says, checked through a real worker with the Apache ``avro``
package on both ends: it writes the ticks (a spec-conformant outside producer), and it reads every
record of every topic the pipeline wrote."""

from __future__ import annotations

import pytest

from agents.topics import FLOW
from connectors.recorded import read_file
from schemas.codec import AvroCodec
from schemas.keys import BasisGroups
from tests.avro_apache import apache_decode, apache_encode, apache_schema
from tests.conftest import ROOT
from tests.kafka_io import produce, read_topic, wait_for_distinct

pytestmark = pytest.mark.integration

FILE = ROOT / "data" / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip"
# Topics this run must fill; external-features has no writer here, alerts and model events depend on
# what the data does (they are checked when present).
MUST_HAVE = {"ticks", "features", "predictions", "shadow-predictions", "outcomes", "performance", "dead-letters",
             "checkpoints"}


def test_outside_avro_producer_and_every_topic_read_by_the_avro_package(worker_factory, pipeline_env):
    env = {**pipeline_env, "LIVELEARN_CHALLENGERS": "fast=logreg@0.05", "LIVELEARN_PERFORMANCE_EVERY": "200",
           "LIVELEARN_DRIFT_WINDOW": "200", "LIVELEARN_DRIFT_WARMUP": "100", "LIVELEARN_MODEL_CHECKPOINT_SECONDS": "1"}
    worker_factory(env).start()
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"]
    tick_schema = apache_schema("tick")
    ticks = [item.tick for item in read_file(FILE)]
    key = BasisGroups.parse("auto").key
    records = [(key(t["symbol"]).encode(), apache_encode(tick_schema, t), t["event_time_ms"]) for t in ticks]
    records.insert(100, (b"BTCUSDT", b"not avro at all", ticks[100]["event_time_ms"]))
    produce(bootstrap, prefix + "ticks", records)
    prediction = AvroCodec.for_topic_schema("prediction")
    assert len(wait_for_distinct(bootstrap, prefix + "predictions", prediction.decode,
                                 lambda r: r["prediction_id"], len(ticks), 240)) == len(ticks)

    # Every prediction is in, so every topic holds records of most of the run: each is read to its end.
    filled = set()
    for spec in FLOW:
        messages = read_topic(bootstrap, prefix + spec.stage, timeout=120, to_end=True)
        if not messages:
            continue
        filled.add(spec.stage)
        schema, ours = apache_schema(spec.schema), AvroCodec.for_topic_schema(spec.schema)
        for message in messages:
            if message.value() == b"not avro at all":
                continue  # the one garbage input, on the ticks topic
            theirs = apache_decode(schema, message.value())
            assert ours.decode(message.value()) == theirs, spec.stage
            # Re-encoded by the avro package, the bytes are the same: one correct form.
            assert apache_encode(schema, theirs) == message.value(), spec.stage
    assert MUST_HAVE <= filled, f"topics without records: {MUST_HAVE - filled}"
    dead = [apache_decode(apache_schema("dead_letter"), m.value())
            for m in read_topic(bootstrap, prefix + "dead-letters", expect=1, timeout=120)]
    assert dead[0]["reason_code"] == "decode_error" and dead[0]["value"] == b"not avro at all"
