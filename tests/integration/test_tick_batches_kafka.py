"""Ticks in micro-batches (the tick-batches topic, `livelearn replay --batch`): a real worker and
`livelearn backtest` apply them exactly as single ticks. The shipped BTCUSDT and ETHUSDT sample, with
one row of the BTCUSDT day repeated (a duplicate the tick gate refuses), is replayed in batches of 50
ticks; every prediction equals the in-process pipeline's on the same ticks one by one, and the
duplicate is dead-lettered alone, as a Tick record, with its reason."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from agents.app import pipeline_config
from agents.settings import Settings
from connectors.recorded import read_file
from schemas.codec import AvroCodec
from streams.pipeline import PartitionPipeline
from tests.conftest import livelearn
from tests.kafka_io import read_topic

pytestmark = pytest.mark.integration

KLINES = Path(__file__).resolve().parents[2] / "data" / "binance" / "klines" / "spot"
TICKS = 2881  # 2 x 1,440 klines and the repeated row


def sample_with_a_repeated_row(folder: Path) -> list[Path]:
    with zipfile.ZipFile(KLINES / "BTCUSDT-1m-2020-01-01.zip") as archive:
        rows = io.TextIOWrapper(archive.open(archive.namelist()[0])).read().splitlines()
    repeated = folder / "BTCUSDT-1m-2020-01-01.csv"
    repeated.write_text("\n".join(rows[:700] + [rows[699]] + rows[700:]) + "\n")
    return [repeated, KLINES / "ETHUSDT-1m-2022-08-14.zip"]


def in_process(paths: list[Path]) -> tuple[dict[str, dict], list[str]]:
    """Predictions by id (latency aside) and rejection codes of the ticks applied one by one, in the
    order the worker's partitions see them (one pipeline per symbol: each symbol is its own key here)."""
    predictions, rejections = {}, []
    for path in paths:
        pipeline = PartitionPipeline(pipeline_config(Settings()))
        for item in read_file(path):
            step = pipeline.on_tick(item.tick)
            if step.rejection:
                rejections.append(step.rejection[1])
            for output in step.records:
                if output.stage == "predictions":
                    record = {k: v for k, v in output.record.items() if k != "latency_ms"}
                    predictions[record["prediction_id"]] = record
    return predictions, rejections


def published(env: dict[str, str], expect: int) -> tuple[dict[str, dict], list[dict]]:
    codec, dead = AvroCodec.for_topic_schema("prediction"), AvroCodec.for_topic_schema("dead_letter")
    bootstrap, prefix = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"]
    predictions = {}
    for message in read_topic(bootstrap, prefix + "predictions", expect=expect, timeout=240):
        record = {k: v for k, v in codec.decode(message.value()).items() if k != "latency_ms"}
        predictions[record["prediction_id"]] = record
    letters = [dead.decode(m.value()) for m in read_topic(bootstrap, prefix + "dead-letters", expect=1, timeout=30)]
    return predictions, letters


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_batched_ticks_give_the_single_tick_predictions_in_a_worker_and_a_backtest(guarantee, worker_factory,
                                                                                   pipeline_env, tmp_path):
    paths = sample_with_a_repeated_row(tmp_path)
    expected, rejections = in_process(paths)
    assert rejections == ["duplicate_tick"] and len(expected) == TICKS - 1
    tick_codec = AvroCodec.for_topic_schema("tick")

    worker_factory({"LIVELEARN_PROCESSING_GUARANTEE": guarantee}).start()
    result = livelearn("replay", *map(str, paths), "--batch", "50", "--quiet", env=pipeline_env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "batch records on" in result.stdout, result.stdout
    from_worker, letters = published(pipeline_env, len(expected))
    assert from_worker == expected
    assert [(d["reason_code"], d["source_topic"]) for d in letters] == [
        ("duplicate_tick", pipeline_env["LIVELEARN_TOPIC_PREFIX"] + "tick-batches")]
    assert tick_codec.decode(letters[0]["value"])["symbol"] == "BTCUSDT"

    backtest_env = {**pipeline_env, "LIVELEARN_TOPIC_PREFIX": "b" + pipeline_env["LIVELEARN_TOPIC_PREFIX"],
                    "LIVELEARN_APP_ID": "b" + pipeline_env["LIVELEARN_APP_ID"]}
    if guarantee == "exactly_once":
        return  # the backtest has no processing guarantee of its own: once is enough
    result = livelearn("replay", *map(str, paths), "--batch", "50", "--quiet", env=backtest_env, timeout=120)
    assert result.returncode == 0, result.stderr
    result = livelearn("backtest", "--quiet", env=backtest_env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{TICKS:,} ticks" in result.stdout, result.stdout
    from_backtest, letters = published(backtest_env, len(expected))
    assert from_backtest == expected
    assert [d["reason_code"] for d in letters] == ["duplicate_tick"]


def test_a_batch_of_thousands_of_ticks_leaves_the_worker_answering_meanwhile(worker_factory, pipeline_env):
    """One tick-batches record from an outside producer holding two days of klines (2,880 ticks,
    seconds of work): /healthz and /metrics answer all the while (0.3 s at most here), and
    every tick is applied. Before, the batch held the worker's event loop until its last tick (one
    request waited 2.1 s here, none was answered during the batch)."""
    import time
    import urllib.request

    from confluent_kafka import Producer

    ticks = [item.tick for day in ("01", "02") for item in read_file(KLINES / f"BTCUSDT-1m-2020-01-{day}.zip")]
    value = AvroCodec.for_topic_schema("tick_batch").encode({"ticks": ticks})
    worker = worker_factory().start()
    producer = Producer(Settings.from_env(pipeline_env).client_config())
    producer.produce(pipeline_env["LIVELEARN_TOPIC_PREFIX"] + "tick-batches", key=b"BTC", value=value)
    assert producer.flush(30) == 0

    waits: list[float] = []

    def featurized() -> float:
        started = time.monotonic()
        with urllib.request.urlopen(worker.url + "/healthz", timeout=60) as response:
            assert response.status == 200
        _, body = worker.get("/metrics")
        waits.append(time.monotonic() - started)
        line = [row for row in body.splitlines() if row.startswith('livelearn_events_total{stage="featurize"}')]
        return float(line[0].split()[-1]) if line else 0.0

    during = 0
    deadline = time.monotonic() + 240
    while (done := featurized()) < len(ticks) and time.monotonic() < deadline:
        during += 0 < done
    assert featurized() == len(ticks)
    assert during >= 3, f"/healthz and /metrics were not answered while the batch was applied (waits {waits})"
    assert max(waits) < 2.0, f"/healthz and /metrics waited {max(waits):.2f} s while the batch was applied"
