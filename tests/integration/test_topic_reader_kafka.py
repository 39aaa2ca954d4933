"""The readers behind `livelearn report`, `evaluate --topics`, `models` and the demo's table, on a real
broker: a topic they could not read to its end is an error, not a smaller run, and records that do not
decode are counted, not dropped in silence."""

from __future__ import annotations

import pytest

from agents.settings import Settings
from agents.topics import create_topics
from cli.errors import CliError
from cli.topic_reader import read_records
from schemas.codec import AvroCodec
from tests.avro_apache import raw_schema
from tests.kafka_io import produce
from tests.unit.test_avro_spec import example

pytestmark = pytest.mark.integration


def test_a_partial_read_is_an_error_and_undecodable_records_are_counted(pipeline_env, capsys):
    settings = Settings.from_env(pipeline_env)
    create_topics(settings)
    codec = AvroCodec.for_topic_schema("model_event")
    template = example(raw_schema("model_event"), {})
    good = [codec.encode({**template, "event_id": f"e{i}"}) for i in range(300)]
    produce(settings.bootstrap_servers, settings.topic("model-events"),
            [(b"BTCUSDT", value, 0) for value in good[:150]] + [(b"BTCUSDT", b"not avro at all", 0)] * 2
            + [(b"BTCUSDT", value, 0) for value in good[150:]])

    records = read_records(settings, "model-events", "model_event")
    assert [r["event_id"] for r in records] == [f"e{i}" for i in range(300)]
    err = capsys.readouterr().err
    assert f"{settings.topic('model-events')}: 2 records skipped that do not decode as model_event" in err, err

    # A read stopped before the end (here by a timeout no read can meet) gives no records at all.
    with pytest.raises(CliError, match="was not read to its end") as raised:
        read_records(settings, "model-events", "model_event", timeout_s=0)
    assert raised.value.code == 2
