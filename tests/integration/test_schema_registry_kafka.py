"""The Confluent wire format end to end: replay -> worker -> predictions with SCHEMA_REGISTRY_URL set,
against confluent-kafka's in-memory registry (``mock://``), on the real broker."""

from __future__ import annotations

import json
import struct

import pytest

from tests.conftest import ROOT, livelearn
from tests.kafka_io import read_topic

pytestmark = pytest.mark.integration

FILE = ROOT / "data" / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip"


def test_replay_worker_predictions_with_the_confluent_wire_format(worker_factory, pipeline_env):
    env = {**pipeline_env, "SCHEMA_REGISTRY_URL": "mock://livelearn-test"}
    worker_factory(env).start()
    result = livelearn("replay", str(FILE), "--quiet", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    printed = livelearn("predictions", "--from-beginning", "--json", "--max", "1440", "--idle-exit", "90", env=env,
                        timeout=300)
    assert printed.returncode == 0, printed.stderr
    predictions = [json.loads(line) for line in printed.stdout.splitlines()]
    assert len({p["prediction_id"] for p in predictions}) == 1440
    # On the wire: magic byte 0, a 4-byte big-endian schema id, the Avro body; no single-object header.
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"]
    for stage in ("ticks", "features", "predictions"):
        value = read_topic(bootstrap, prefix + stage, expect=1)[0].value()
        assert value[0] == 0 and struct.unpack(">I", value[1:5])[0] >= 1, stage
        assert value[:2] != b"\xc3\x01"
