"""The readers behind `livelearn report`, `evaluate --topics`, `models` and the demo's table, on a real
broker: a topic they could not read to its end is an error, not a smaller run, and records that do not
decode are counted, not dropped in silence."""

from __future__ import annotations

import os

import pytest

from agents.settings import Settings
from agents.topics import create_topics
from cli.errors import CliError
from cli.topic_reader import read_records
from schemas.codec import AvroCodec
from tests.avro_apache import raw_schema
from tests.conftest import livelearn
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


def test_a_prefix_with_no_topics_is_named_with_the_prefixes_there_are(pipeline_env):
    """A mistyped LIVELEARN_TOPIC_PREFIX used to give an empty report, "no predictions yet" and exit 0."""
    settings = Settings.from_env(pipeline_env)
    create_topics(settings)
    prefix = settings.topic_prefix
    typo = prefix[:2] + "x" + prefix[3:]  # one letter mistyped (the run id is hex: never "x")
    env = {**pipeline_env, "LIVELEARN_TOPIC_PREFIX": typo}
    for command in (("report", "--out", "/dev/null"), ("models",), ("evaluate",)):
        result = livelearn(*command, env=env, timeout=120)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        message = result.stderr.strip()
        assert f"does not exist (LIVELEARN_TOPIC_PREFIX={typo!r}" in message, message
        # The intended prefix comes first among those the broker has.
        assert message.split("under the prefixes ", 1)[1].startswith(repr(prefix)), message


def test_a_follower_started_before_its_topic_exists_says_so_and_reads_it_once_it_does(pipeline_env):
    """It said only "consumer error: ... Unknown topic or partition"; now it names the missing topic and
    the prefix, waits, and prints what is published once the topic exists."""
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    settings = Settings.from_env(pipeline_env)
    follower = subprocess.Popen([sys.executable, "-m", "cli.main", "alerts", "--json", "--max", "1", "--from-beginning"],
                                cwd=ROOT, env={**os.environ, **pipeline_env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(8)
        assert follower.poll() is None
        create_topics(settings)
        codec = AvroCodec.for_topic_schema("drift_alert")
        alert = {**example(raw_schema("drift_alert"), {}), "alert_id": "a-1"}
        produce(settings.bootstrap_servers, settings.topic("alerts"), [(b"BTCUSDT", codec.encode(alert), 0)])
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    assert "does not exist" in err and "waiting for it" in err, err
    assert "consumer error" not in err, err
    assert '"alert_id": "a-1"' in out, out


def test_a_range_of_one_partition_is_read_from_its_start_up_to_its_stop(pipeline_env):
    from confluent_kafka import Producer

    from connectors.topic_end import first_offset, read_between

    settings = Settings.from_env(pipeline_env)
    create_topics(settings)
    topic = settings.topic("feedback")
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for i in range(10):
        producer.produce(topic, f"r{i}".encode(), partition=1)
    producer.produce(topic, b"elsewhere", partition=0)
    assert producer.flush(30) == 0
    config = settings.client_config()

    assert [m.value() for m in read_between(config, topic, 1, 3, 7)] == [b"r3", b"r4", b"r5", b"r6"]
    # A stop past the end ends at the end; an empty range reads nothing.
    assert [m.offset() for m in read_between(config, topic, 1, 8, 100)] == [8, 9]
    assert list(read_between(config, topic, 1, 5, 5)) == []
    assert first_offset(config, topic, 1) == 0
    with pytest.raises(TimeoutError, match="not read from offset 0 to 10"):
        list(read_between({**config, "bootstrap.servers": "127.0.0.1:1"}, topic, 1, 0, 10, timeout=1.0))
