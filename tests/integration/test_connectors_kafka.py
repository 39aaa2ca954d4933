"""Replay and the command-line readers against the real broker."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile

import pytest

from schemas.codec import AvroCodec
from tests.conftest import ROOT, livelearn
from tests.kafka_io import produce, read_topic

pytestmark = pytest.mark.integration

KLINES = ROOT / "data" / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip"


def topic_digest(bootstrap: str, topic: str, expect: int) -> tuple[str, list]:
    messages = read_topic(bootstrap, topic, expect=expect)
    messages.sort(key=lambda m: (m.partition(), m.offset()))
    digest = hashlib.sha256()
    for m in messages:
        digest.update(m.key() + b"\0" + m.value() + b"\0" + str(m.timestamp()[1]).encode())
    return digest.hexdigest(), messages


def test_replay_produces_1440_ticks_with_event_times_and_is_byte_identical(pipeline_env):
    bootstrap = pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    digests = []
    for run in ("a", "b"):
        env = {**pipeline_env, "LIVELEARN_TOPIC_PREFIX": pipeline_env["LIVELEARN_TOPIC_PREFIX"] + run + "."}
        result = livelearn("replay", str(KLINES), "--speed", "max", env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "rows read 1440, produced 1440, rejected 0" in result.stdout
        assert "ETA" in result.stderr  # the progress bar
        # Not a terminal: whole lines, none redrawn with carriage returns (connectors.status_line).
        assert "\r" not in result.stderr and result.stderr.endswith("\n")
        digest, messages = topic_digest(bootstrap, env["LIVELEARN_TOPIC_PREFIX"] + "ticks", 1440)
        assert len(messages) == 1440
        codec = AvroCodec.for_topic_schema("tick")
        ticks = [codec.decode(m.value()) for m in messages]
        assert all(m.timestamp()[1] == t["event_time_ms"] for m, t in zip(messages, ticks, strict=True))
        assert ticks[0]["event_time_ms"] == 1577836859999 and ticks[-1]["event_time_ms"] == 1577923199999
        assert {m.key() for m in messages} == {b"BTC"}  # keyed by basis group (schemas/keys.py)
        digests.append(digest)
    assert digests[0] == digests[1]


def test_malformed_row_is_dead_lettered_through_kafka(pipeline_env, tmp_path):
    rows = zipfile.ZipFile(KLINES).read("BTCUSDT-1m-2020-01-01.csv").decode().splitlines()[:20]
    rows[7] = "1577837220000,oops"
    path = tmp_path / "BTCUSDT-1m-broken.csv"
    path.write_text("\n".join(rows) + "\n")
    result = livelearn("replay", str(path), "--quiet", env=pipeline_env, timeout=120)
    assert result.returncode == 0 and "produced 19, rejected 1" in result.stdout
    prefix, bootstrap = pipeline_env["LIVELEARN_TOPIC_PREFIX"], pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    dead = [AvroCodec.for_topic_schema("dead_letter").decode(m.value())
            for m in read_topic(bootstrap, prefix + "dead-letters", expect=1)]
    assert dead[0]["reason_code"] == "malformed_row" and dead[0]["source_offset"] == 8
    assert dead[0]["value"] == b"1577837220000,oops" and dead[0]["source_topic"] == str(path)
    assert len(read_topic(bootstrap, prefix + "ticks", expect=19)) == 19


def test_replay_of_a_folder_leaves_out_its_notes_and_metadata_instead_of_dead_lettering_them(pipeline_env, tmp_path):
    """A downloaded tree holds a log, a script and a metadata table beside the dumps: each was read as
    data and every row of it dead-lettered. Now each is left out with a line, the dump is replayed, and
    nothing reaches the dead letters; a file named on its own is still read, and its rows refused."""
    import shutil

    shutil.copy(KLINES, tmp_path)
    (tmp_path / "download.log").write_text("fetched BTCUSDT-1m-2020-01-01.zip\n")
    (tmp_path / "fetch.py").write_text("import urllib.request\n")
    metadata = tmp_path / "metadata_range_1m_20200101.csv"
    metadata.write_text("pair,interval,start_utc,end_utc\nBTCUSDT,1m,2020-01-01T00:00:00Z,2020-01-01T23:59:00Z\n")
    result = livelearn("replay", str(tmp_path), "--quiet", env=pipeline_env, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in ("download.log", "fetch.py", metadata.name):
        assert f"{tmp_path / name}: no tick in its first 10,000 rows (not market data?): left out" in result.stderr
    assert "rows read 1440, produced 1440, rejected 0" in result.stdout
    prefix, bootstrap = pipeline_env["LIVELEARN_TOPIC_PREFIX"], pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    assert len(read_topic(bootstrap, prefix + "ticks", expect=1440)) == 1440
    assert read_topic(bootstrap, prefix + "dead-letters", to_end=True) == []
    result = livelearn("replay", str(metadata), "--quiet", env=pipeline_env, timeout=120)
    assert result.returncode == 1 and "every row was rejected" in result.stderr


def test_replay_exit_code_says_when_rows_were_rejected(pipeline_env, tmp_path):
    rows = zipfile.ZipFile(KLINES).read("BTCUSDT-1m-2020-01-01.csv").decode().splitlines()[:10]
    # A klines file read as trades: every row is rejected, nothing reaches the topic.
    path = tmp_path / "BTCUSDT-1m-misread.csv"
    path.write_text("\n".join(rows) + "\n")
    result = livelearn("replay", str(path), "--quiet", "--format", "trades", env=pipeline_env, timeout=120)
    assert result.returncode == 1
    assert "rejected 10" in result.stdout and "every row was rejected" in result.stderr
    rows[2] = "garbage,row"
    path.write_text("\n".join(rows) + "\n")
    result = livelearn("replay", str(path), "--quiet", "--max-reject-ratio", "0.05", env=pipeline_env, timeout=120)
    assert result.returncode == 1 and "10.0% of the rows were rejected" in result.stderr
    result = livelearn("replay", str(path), "--quiet", "--max-reject-ratio", "0.2", env=pipeline_env, timeout=120)
    assert result.returncode == 0 and "produced 9, rejected 1" in result.stdout


def test_a_capture_replayed_in_the_order_received_reaches_kafka_as_live_published_it(pipeline_env):
    """`replay --order received`: the ETHUSDT capture's ticks on the topic in the order `live`'s handler
    gives its lines as received, book tickers in Binance's clock (the recorder's ran 1.27 s behind)."""
    from tests.unit.test_binance_rest_live import received_as_live

    capture = ROOT / "data" / "binance" / "ws" / "spot_ethusdt_20240808.gz"
    live = received_as_live(capture)
    result = livelearn("replay", str(capture), "--order", "received", "--quiet", env=pipeline_env, timeout=180)
    assert result.returncode == 0, result.stderr
    prefix, bootstrap = pipeline_env["LIVELEARN_TOPIC_PREFIX"], pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    messages = sorted(read_topic(bootstrap, prefix + "ticks", expect=len(live), timeout=120),
                      key=lambda m: (m.partition(), m.offset()))
    codec = AvroCodec.for_topic_schema("tick")
    fields = ("kind", "event_time_ms", "price", "quantity", "sequence_id", "receive_time_ms")
    assert [tuple(codec.decode(m.value())[f] for f in fields) for m in messages] == [
        tuple(t[f] for f in fields) for t in live]


def test_alerts_subscriber_prints_a_published_alert(pipeline_env):
    livelearn("topics", "create", env=pipeline_env, timeout=60)
    env = {**os.environ, **pipeline_env}
    subscriber = subprocess.Popen([sys.executable, "-m", "cli.main", "alerts", "--json", "--max", "1"], cwd=ROOT,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        alert = {
            "alert_id": "BTCUSDT-feature-1-1", "symbol": "BTCUSDT", "kind": "FEATURE", "test_name": "ks_2samp",
            "statistic": 0.4, "p_value": 1e-9, "adjusted_p_value": 2e-8, "effect_size": 0.4,
            "reference_start_ms": 1, "reference_end_ms": 2, "current_start_ms": 3, "current_end_ms": 4,
            "severity": "HIGH", "status": "FIRING", "affected_features": ["ret_1"],
            "recommended_action": "rebase_reference", "created_time_ms": 1_700_000_000_000,
        }
        # The subscriber starts at the newest offset: publish until it has joined and printed.
        deadline = time.monotonic() + 60
        while subscriber.poll() is None and time.monotonic() < deadline:
            produce(pipeline_env["KAFKA_BOOTSTRAP_SERVERS"], pipeline_env["LIVELEARN_TOPIC_PREFIX"] + "alerts",
                    [(b"BTCUSDT", AvroCodec.for_topic_schema("drift_alert").encode(alert), alert["created_time_ms"])])
            try:
                subscriber.wait(2)
            except subprocess.TimeoutExpired:
                pass
        out, err = subscriber.communicate(timeout=30)
    finally:
        subscriber.kill()
    assert subscriber.returncode == 0, err
    printed = json.loads(out.strip().splitlines()[0])
    assert printed["alert_id"] == "BTCUSDT-feature-1-1" and printed["severity"] == "HIGH"


def test_unreachable_broker_is_one_clear_line_and_exit_2():
    result = livelearn("topics", "list", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no Kafka broker answers at 127.0.0.1:1" in result.stderr and "livelearn kafka up" in result.stderr


def test_kafkas_own_tools_run_with_the_fetched_jars(pipeline_env):
    """TopicCommand, ConsoleConsumer and ConsumerGroupCommand (kafka-tools) against the broker."""
    bootstrap, prefix = pipeline_env["KAFKA_BOOTSTRAP_SERVERS"], pipeline_env["LIVELEARN_TOPIC_PREFIX"]
    assert livelearn("topics", "create", env=pipeline_env, timeout=60).returncode == 0
    produce(bootstrap, prefix + "ticks", [(b"BTCUSDT", b"raw-value", 1_700_000_000_000)])
    listed = livelearn("kafka", "tool", "topics", "--bootstrap-server", bootstrap, "--describe", "--topic",
                       prefix + "ticks", timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert f"Topic: {prefix}ticks" in listed.stdout and "PartitionCount: 2" in listed.stdout
    consumed = livelearn("kafka", "tool", "console-consumer", "--bootstrap-server", bootstrap, "--topic",
                         prefix + "ticks", "--from-beginning", "--max-messages", "1", "--group", f"{prefix}tools",
                         "--property", "print.key=true", timeout=120)
    assert consumed.returncode == 0, consumed.stderr
    assert "BTCUSDT\traw-value" in consumed.stdout
    groups = livelearn("kafka", "tool", "consumer-groups", "--bootstrap-server", bootstrap, "--list", timeout=120)
    assert groups.returncode == 0 and f"{prefix}tools" in groups.stdout
