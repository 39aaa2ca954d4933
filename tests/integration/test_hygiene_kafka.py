"""Input that cannot poison a symbol, and a producer that never loses accepted input (issue #19), on
a real broker.

* Poison ticks produced mid-stream (one an hour ahead, one stamped 2099, an exact duplicate, prices of
  1e-300, 1e308 and 3x) go through `livelearn produce` (they are valid ticks) into a real worker: each
  is dead-lettered by the worker with its reason, and the worker's predictions equal, record for
  record, those of the same partition pipeline run in process on the stream without them.
* `livelearn produce` with bad lines among good ones (a number, a list or null as symbol, a JSON array,
  null, not JSON, a 1 MB line, wrong types): every good line reaches the topic, every bad one is
  dead-lettered with its reason (the oversized one truncated, its length in the reason), exit 1 with
  the counts. Feedback labels 1.0 and true are accepted.
"""

from __future__ import annotations

import json

import pytest

from agents.app import pipeline_config
from agents.settings import Settings
from connectors.json_lines import KEEP_BYTES, parse_tick
from connectors.recorded import read_file
from schemas.codec import AvroCodec
from streams.pipeline import PartitionPipeline
from tests.conftest import DATA, livelearn
from tests.kafka_io import read_topic

pytestmark = pytest.mark.integration

KLINES = DATA / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip"
SETTINGS = {"LIVELEARN_MEMBERS": "logreg"}
N, AT = 700, 600


def line_of(tick: dict) -> str:
    return json.dumps({k: v for k, v in tick.items() if v is not None})


def poison_after(tick: dict) -> list[tuple[str, str]]:
    lines = []
    for code, change in (("future_event", {"event_time_ms": tick["event_time_ms"] + 3_600_000}),
                         ("future_event", {"event_time_ms": 4_081_000_000_000}),
                         ("duplicate_tick", {}),
                         ("implausible_value", {"price": 1e-300, "open": 1e-300, "high": 1e-300, "low": 1e-300}),
                         ("implausible_value", {"price": 1e308, "open": 1e308, "high": 1e308, "low": 1e308}),
                         ("implausible_value", {k: tick[k] * 3 for k in ("price", "open", "high", "low")})):
        lines.append((code, line_of({**tick, **change})))
    return lines


def decoded(env, stage, schema, expect=None):
    codec = AvroCodec.for_topic_schema(schema)
    return [codec.decode(m.value()) for m in read_topic(env["KAFKA_BOOTSTRAP_SERVERS"],
                                                        env["LIVELEARN_TOPIC_PREFIX"] + stage,
                                                        expect=expect, timeout=240, idle=3.0)]


def test_poison_ticks_are_dead_lettered_by_the_worker_and_change_no_prediction(worker_factory, pipeline_env):
    env = {**pipeline_env, **SETTINGS}
    worker_factory(SETTINGS).start()
    clean = [line_of(item.tick) for item in read_file(KLINES)[:N]]
    poison = poison_after(parse_tick(clean[AT].encode()))
    lines = clean[:AT + 1] + [line for _, line in poison] + clean[AT + 1:]
    result = livelearn("produce", "ticks", env=env, input="\n".join(lines) + "\n", timeout=120)
    assert result.returncode == 0, result.stderr  # every poison tick is a valid tick

    expected = []
    pipeline = PartitionPipeline(pipeline_config(Settings.from_env(env)))
    for line in clean:
        expected += [o.record for o in pipeline.on_tick(parse_tick(line.encode())).records if o.stage == "predictions"]
    got = decoded(env, "predictions", "prediction", expect=N)
    strip = [{k: v for k, v in r.items() if k != "latency_ms"} for r in expected]
    assert [{k: v for k, v in r.items() if k != "latency_ms"} for r in got] == strip
    dead = decoded(env, "dead-letters", "dead_letter", expect=len(poison))
    assert sorted(d["reason_code"] for d in dead) == sorted(code for code, _ in poison)
    assert all(d["stage"] == "featurize" and d["source_topic"].endswith("ticks") for d in dead)


def test_produce_keeps_every_good_line_and_dead_letters_each_bad_one(pipeline_env):
    env = pipeline_env
    good = [{"symbol": "BTCUSDT", "kind": "TRADE", "event_time_ms": 1_700_000_000_000 + i, "price": 100.0 + i,
             "quantity": 1.0} for i in range(5)]
    bad = [('{"symbol": 42, "kind": "TRADE", "event_time_ms": 1700000000000, "price": 1}', "invalid_input"),
           ('{"symbol": ["BTCUSDT"], "kind": "TRADE", "event_time_ms": 1700000000000, "price": 1}', "invalid_input"),
           ('{"symbol": null, "kind": "TRADE", "event_time_ms": 1700000000000, "price": 1}', "invalid_input"),
           ("[1, 2, 3]", "invalid_input"), ("null", "invalid_input"), ("{not json", "invalid_input"),
           ('{"symbol": "BTCUSDT", "kind": "TRADE", "event_time_ms": "soon", "price": 1}', "invalid_input"),
           ('{"symbol": "BTCUSDT", "kind": "TRADE", "event_time_ms": 1700000000000, "price": true}', "invalid_input"),
           ('{"symbol": "BTCUSDT", "kind": "TRADE", "event_time_ms": 1700000000000, "price": -1}', "invalid_value"),
           ('{"symbol": "BTCUSDT", "kind": "TRADE", "event_time_ms": 1700000000000, "price": 1, "x": "' + "a" * 1_048_576
            + '"}', "oversized_line")]
    lines = [json.dumps(good[0])]
    for i, (line, _) in enumerate(bad):
        lines += [line, json.dumps(good[1 + i % 4])] if i < 4 else [line]
    result = livelearn("produce", "ticks", env=env, input="\n".join(lines) + "\n", timeout=120)
    assert result.returncode == 1
    assert f"produced 5, rejected {len(bad)}" in result.stderr
    ticks = decoded(env, "ticks", "tick", expect=5)
    assert [(t["symbol"], t["event_time_ms"], t["price"]) for t in ticks] == \
        [(g["symbol"], g["event_time_ms"], g["price"]) for g in good]
    dead = decoded(env, "dead-letters", "dead_letter", expect=len(bad))
    dead.sort(key=lambda d: d["source_offset"])
    assert [d["reason_code"] for d in dead] == [code for _, code in bad]
    oversized = dead[-1]
    assert len(oversized["value"]) == KEEP_BYTES and "1,048,6" in oversized["reason"]

    feedback = [{"symbol": "BTCUSDT", "prediction_id": "p1", "label": 1.0},
                {"symbol": "BTCUSDT", "prediction_id": "p2", "label": True},
                {"symbol": "BTCUSDT", "prediction_id": "p3", "label": 0}]
    result = livelearn("produce", "feedback", env=env, input="".join(json.dumps(f) + "\n" for f in feedback)
                       + '{"symbol": "BTCUSDT", "prediction_id": "p4", "label": 2}\n', timeout=120)
    assert result.returncode == 1 and "produced 3, rejected 1" in result.stderr
    labels = [f["label"] for f in decoded(env, "feedback", "feedback", expect=3)]
    assert labels == [1, 1, 0]


def test_a_worker_with_a_reorder_window_applies_displaced_ticks_in_order(worker_factory, pipeline_env):
    settings = {**SETTINGS, "LIVELEARN_REORDER_MS": "300000"}  # five one-minute klines
    env = {**pipeline_env, **settings}
    worker_factory(settings).start()
    ticks = [item.tick for item in read_file(KLINES)[:N]]
    shuffled = list(ticks)
    for i in range(0, N - 1, 2):
        shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    result = livelearn("produce", "ticks", env=env, input="".join(line_of(t) + "\n" for t in shuffled), timeout=120)
    assert result.returncode == 0, result.stderr
    pipeline = PartitionPipeline(pipeline_config(Settings.from_env({**env, "LIVELEARN_REORDER_MS": "0"})))
    expected = [{k: v for k, v in o.record.items() if k != "latency_ms"}
                for t in ticks for o in pipeline.on_tick(t).records if o.stage == "predictions"]
    # The last ticks are let out once the input has been quiet for the window's length of wall time.
    got = decoded(env, "predictions", "prediction", expect=N)
    assert [{k: v for k, v in r.items() if k != "latency_ms"} for r in got] == expected


def test_a_tick_stamped_far_ahead_costs_no_other_tick_where_the_broker_refuses_future_timestamps(pipeline_env):
    """Kafka 4's brokers refuse a record stamped more than an hour ahead of their clock
    (``log.message.timestamp.after.max.ms``), and with it the whole batch it travels in: against a
    4.1.1 broker one tick stamped 2099 cost `produce` every one of the 706 ticks of the test above, and
    a traceback. The test broker is given the same limit on this run's ticks topic. Now such a tick is
    stamped with the producer's clock instead of its event time, its value unchanged (the worker's gate
    dead-letters it as ``future_event``), and every tick arrives; the others keep their event times."""
    import time

    from confluent_kafka.admin import AdminClient, NewTopic

    env = {**pipeline_env, **SETTINGS}
    bootstrap, topic = env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"] + "ticks"
    partitions = Settings.from_env(env).kafka.partitions
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1,
                                  config={"message.timestamp.after.max.ms": "3600000"})])[topic].result(30)
    clean = [line_of(item.tick) for item in read_file(KLINES)[:50]]
    future = line_of({**parse_tick(clean[10].encode()), "event_time_ms": 4_081_000_000_000})
    started_ms = time.time() * 1000
    result = livelearn("produce", "ticks", env=env, input="\n".join(clean[:11] + [future] + clean[11:]) + "\n",
                       timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    codec = AvroCodec.for_topic_schema("tick")
    stamped = [(codec.decode(m.value())["event_time_ms"], m.timestamp()[1])
               for m in read_topic(bootstrap, topic, expect=51, timeout=60)]
    assert len(stamped) == 51
    assert all(event == kafka for event, kafka in stamped if event != 4_081_000_000_000)
    [(_, kafka)] = [s for s in stamped if s[0] == 4_081_000_000_000]
    assert started_ms - 1000 <= kafka <= time.time() * 1000 + 1000
