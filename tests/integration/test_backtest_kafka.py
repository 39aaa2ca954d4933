"""The batched replay path (`livelearn backtest`) publishes the same records as a worker.

The shipped BTCUSDT and ETHUSDT sample (2,880 one-minute klines, two symbols on two partitions) is
replayed into two isolated topic sets. A real worker runs the pipeline on the first; `livelearn
backtest` (confluent-kafka batches, no Faust) on the second. Every prediction, feedback record,
feature vector, drift alert and model event must be equal, field by field, except the wall-clock
fields (a prediction's ``latency_ms``).

The backtest's predictions, outcomes and alerts are also compared with a golden file committed before
the per-partition pipeline was redesigned (issue #17: records unchanged by the redesign).
``LIVELEARN_WRITE_GOLDEN=1`` rewrites it, for a deliberate change of behaviour, in its own commit.
Against the golden file, floats may differ in their last float32 digits (relative 1e-6): torch runs
other kernels on other processors (AVX2 or AVX-512), and the MLP's float32 arithmetic rounds
differently (measured: the file written on one machine differs on an AVX-512 one in predictions only,
by at most 1.5e-7 relative in the MLP's probability, 9.5e-7 in its weight); every other field, every
outcome and alert, is compared exactly, and so is the worker against the backtest on one machine.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from schemas.codec import AvroCodec
from tests.conftest import livelearn, same_up_to_float32
from tests.kafka_io import read_topic

pytestmark = pytest.mark.integration

SAMPLE = [str(Path(__file__).resolve().parents[2] / "data" / "binance" / "klines" / "spot" / name)
          for name in ("BTCUSDT-1m-2020-01-01.zip", "ETHUSDT-1m-2022-08-14.zip")]
TICKS = 2880
# Small drift windows, so that a short replay raises alerts whose equality is checked too.
SETTINGS = {"LIVELEARN_DRIFT_WINDOW": "200", "LIVELEARN_DRIFT_WARMUP": "100"}
COMPARED = {"predictions": "prediction", "outcomes": "feedback", "features": "features",
            "alerts": "drift_alert", "model-events": "model_event"}
WALL_CLOCK = {"latency_ms"}
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "backtest_sample.jsonl.gz"
# Label in the golden file -> topic stage (outcomes were on the feedback topic when it was written).
GOLDEN_STAGES = (("predictions", "predictions"), ("feedback", "outcomes"), ("alerts", "alerts"))


def golden_lines(records_by_stage: dict[str, dict[bytes, list[dict]]]) -> list[str]:
    """One canonical JSON line per record (stage, key, position in the key's sequence, record)."""
    return [json.dumps([label, key.decode(), i, record], sort_keys=True)
            for label, stage in GOLDEN_STAGES for key, records in sorted(records_by_stage[stage].items())
            for i, record in enumerate(records)]


def records(env: dict[str, str], stage: str, schema: str, expect: int | None = None,
            to_end: bool = False) -> dict[bytes, list[dict]]:
    """A topic's records per key (symbol), in offset order, without wall-clock fields."""
    codec = AvroCodec.for_topic_schema(schema)
    out: dict[bytes, list[dict]] = {}
    for message in read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"] + stage,
                              expect=expect, timeout=240, idle=3.0, to_end=to_end):
        record = {k: v for k, v in codec.decode(message.value()).items() if k not in WALL_CLOCK}
        out.setdefault(message.key(), []).append(record)
    return out


def test_backtest_publishes_the_same_records_as_a_worker(worker_factory, pipeline_env):
    worker_env = {**pipeline_env, **SETTINGS}
    worker_factory(SETTINGS).start()
    assert livelearn("replay", *SAMPLE, "--quiet", env=worker_env, timeout=120).returncode == 0
    # Every prediction read, then one idle wait on a topic written at the end of a tick's step (the
    # worker's last records flushed), then the rest to their ends.
    from_worker = {"predictions": records(worker_env, "predictions", "prediction", TICKS),
                   "alerts": records(worker_env, "alerts", "drift_alert")}
    from_worker.update({stage: records(worker_env, stage, schema, to_end=True)
                        for stage, schema in COMPARED.items() if stage not in from_worker})

    # What a backtest's note says of these topics: the worker's group reads them (its one member).
    from agents.backtest import groups_reading
    from agents.settings import Settings

    ticks = pipeline_env["LIVELEARN_TOPIC_PREFIX"] + "ticks"
    assert groups_reading(Settings.from_env(worker_env), ticks, 15.0) == {pipeline_env["LIVELEARN_APP_ID"]: 1}

    backtest_env = {**worker_env, "LIVELEARN_TOPIC_PREFIX": "b" + pipeline_env["LIVELEARN_TOPIC_PREFIX"],
                    "LIVELEARN_APP_ID": "b" + pipeline_env["LIVELEARN_APP_ID"]}
    assert livelearn("replay", *SAMPLE, "--quiet", env=backtest_env, timeout=120).returncode == 0
    result = livelearn("backtest", "--quiet", env=backtest_env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{TICKS:,} ticks" in result.stdout and f"{TICKS:,} predictions" in result.stdout
    from_backtest = {stage: records(backtest_env, stage, schema, to_end=True)  # flushed before it exited
                     for stage, schema in COMPARED.items()}

    assert sum(len(v) for v in from_worker["predictions"].values()) == TICKS
    assert set(from_worker["predictions"]) == {b"BTCUSDT", b"ETHUSDT"}
    assert sum(len(v) for v in from_worker["alerts"].values()) > 0  # the comparison covers alerts too
    for stage in COMPARED:
        assert from_backtest[stage] == from_worker[stage], stage

    lines = golden_lines(from_backtest)
    if os.environ.get("LIVELEARN_WRITE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        with gzip.open(GOLDEN, "wt") as out:
            out.write("\n".join(lines) + "\n")
    golden = gzip.open(GOLDEN, "rt").read().splitlines()
    assert len(lines) == len(golden)
    mismatched = [i for i, (a, b) in enumerate(zip(lines, golden, strict=True))
                  if a != b and not same_up_to_float32(json.loads(a), json.loads(b))]
    assert not mismatched, f"{len(mismatched)} records differ from the golden file, first: {golden[mismatched[0]][:300]}"


def test_a_backtest_of_a_missing_or_empty_ticks_topic_says_so_and_creates_nothing(pipeline_env, kafka):
    """A mistyped topic prefix must not create a set of empty topics and report a backtest of nothing."""
    from confluent_kafka.admin import AdminClient

    prefix = pipeline_env["LIVELEARN_TOPIC_PREFIX"]
    result = livelearn("backtest", "--quiet", env=pipeline_env, timeout=120)
    assert result.returncode == 2
    assert f"topic {prefix}ticks does not exist: nothing to backtest" in result.stderr
    assert not [t for t in AdminClient({"bootstrap.servers": kafka}).list_topics(timeout=15).topics
                if t.startswith(prefix)]

    assert livelearn("topics", "create", env=pipeline_env, timeout=60).returncode == 0
    result = livelearn("backtest", "--quiet", env=pipeline_env, timeout=120)
    assert result.returncode == 2
    assert (f"topics {prefix}ticks, {prefix}tick-batches and {prefix}external-features hold nothing: nothing to "
            "backtest") in result.stderr


def test_a_backtest_applies_feedback_in_the_order_it_became_known(pipeline_env):
    """Feedback on the feedback topic, produced out of time order: the backtest applies each record
    before the first tick after its ``feedback_time_ms`` (one known after the last tick, at the end),
    and its predictions equal the in-process pipeline's given the same feedback at the same points.
    They differ from a run without the feedback (it was learned). An unknown id and a record that does
    not decode are dead-lettered with their reasons. Before, the backtest left the feedback topic out."""
    from confluent_kafka import Producer

    from agents.app import pipeline_config
    from agents.settings import Settings
    from connectors.recorded import read_file
    from streams.pipeline import PartitionPipeline

    settings = Settings.from_env(pipeline_env)
    ticks = [item.tick for item in read_file(Path(SAMPLE[0]))]

    def predictions(feedback: list[dict]) -> list[dict]:
        """The in-process pipeline's predictions, each feedback record applied before the first tick
        after it became known, or after its prediction's tick if that came later (in time order, ties
        in the topic's order)."""
        pipeline, waiting, out = PartitionPipeline(pipeline_config(settings)), list(feedback), []
        made = {p["prediction_id"]: p["event_time_ms"] for p in issued}

        def known(record: dict) -> int:
            return max(record["feedback_time_ms"], made.get(record["prediction_id"], 0))

        waiting.sort(key=known)
        for tick in ticks:
            while waiting and known(waiting[0]) < tick["event_time_ms"]:
                pipeline.on_feedback(waiting.pop(0))
            out += [{k: v for k, v in o.record.items() if k not in WALL_CLOCK}
                    for o in pipeline.on_tick(tick).records if o.stage == "predictions"]
        return out

    issued: list[dict] = []  # what predictions() knows of the ids: nothing yet on the call that makes them
    issued = predictions([])

    def feedback(index: int, minutes_later: int, label: int, prediction_id: str | None = None) -> dict:
        return {"prediction_id": prediction_id or issued[index]["prediction_id"], "symbol": "BTCUSDT",
                "event_time_ms": None, "label": label, "realised_return": None, "score": None, "source": "desk",
                "feedback_time_ms": issued[index]["event_time_ms"] + minutes_later * 60_000,
                "matured_tick_index": None}

    # In the topic's order, known at about 08:50, 07:10, 07:01, 15:05 and the day's end + 1 h; the unknown
    # id at 12:00; one stamped 5 minutes before its prediction at 10:00 (its producer's clock behind):
    # applied after that prediction's tick, as a worker meeting it then does.
    given = [feedback(500, 30, 0), feedback(400, 30, 1), feedback(420, 1, 0), feedback(900, 5, 1),
             feedback(len(issued) - 1, 60, 1), feedback(720, 0, 1, prediction_id="BTCUSDT-0-0"),
             feedback(600, -5, 0)]
    expected = predictions(given)
    assert expected != issued  # the feedback changes later predictions

    assert livelearn("replay", SAMPLE[0], "--quiet", env=pipeline_env, timeout=120).returncode == 0
    codec = AvroCodec.for_topic_schema("feedback")
    producer = Producer(settings.client_config())
    for record in given[:3] + [None] + given[3:]:
        value = b"not avro" if record is None else codec.encode(record)
        producer.produce(settings.topic("feedback"), key=b"BTC", value=value,
                         timestamp=(record or given[2])["feedback_time_ms"])
    assert producer.flush(30) == 0
    result = livelearn("backtest", "--quiet", env=pipeline_env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"8 feedback records of {settings.topic('feedback')} (6 learned)" in result.stdout, result.stdout

    published = records(pipeline_env, "predictions", "prediction", to_end=True)[b"BTCUSDT"]
    assert len(published) == len(expected) and published == expected
    dead = [AvroCodec.for_topic_schema("dead_letter").decode(m.value()) for m in
            read_topic(pipeline_env["KAFKA_BOOTSTRAP_SERVERS"], settings.topic("dead-letters"), to_end=True)]
    assert sorted((d["reason_code"], d["source_topic"]) for d in dead) == [
        ("decode_error", settings.topic("feedback")), ("unknown_prediction", settings.topic("feedback"))]


def test_a_backtest_in_two_processes_publishes_what_one_process_does(pipeline_env):
    """`backtest --jobs 2` shares the input partitions out among two processes, as a consumer group
    does among workers: BTCUSDT's and ETHUSDT's partitions, each with feedback (learned, unknown, one
    record that does not decode). Every record of every output topic, per key and in order, equals the
    one-process backtest's on the same inputs, and so do the counts."""
    from confluent_kafka import Producer

    from agents.app import pipeline_config
    from agents.settings import Settings
    from connectors.recorded import read_file
    from streams.pipeline import PartitionPipeline

    one_env = {**pipeline_env, **SETTINGS}
    two_env = {**one_env, "LIVELEARN_TOPIC_PREFIX": "j" + pipeline_env["LIVELEARN_TOPIC_PREFIX"]}
    settings = Settings.from_env(one_env)
    given = []
    for path in SAMPLE:  # feedback naming predictions the pipeline makes (their ids from an in-process run)
        pipeline = PartitionPipeline(pipeline_config(settings))
        made = [o.record for tick in read_file(Path(path)) for o in pipeline.on_tick(tick.tick).records
                if o.stage == "predictions"]
        for index, minutes_later, label in ((300, 30, 1), (301, 2, 0), (700, 90, 1)):
            given.append({"prediction_id": made[index]["prediction_id"], "symbol": made[index]["symbol"],
                          "event_time_ms": None, "label": label, "realised_return": None, "score": None,
                          "source": "desk", "feedback_time_ms": made[index]["event_time_ms"] + minutes_later * 60_000,
                          "matured_tick_index": None})
    given.append({**given[-1], "prediction_id": "ETHUSDT-0-0"})  # unknown
    codec = AvroCodec.for_topic_schema("feedback")
    for env in (one_env, two_env):
        assert livelearn("replay", *SAMPLE, "--quiet", env=env, timeout=120).returncode == 0
        producer = Producer(Settings.from_env(env).client_config())
        for record in [*given, None]:
            symbol = (record or given[-1])["symbol"]
            producer.produce(Settings.from_env(env).topic("feedback"), key=settings.partition_key(symbol).encode(),
                             value=b"not avro" if record is None else codec.encode(record))
        assert producer.flush(30) == 0

    one = livelearn("backtest", "--quiet", env=one_env, timeout=300)  # --jobs auto: one process, so few records
    two = livelearn("backtest", "--quiet", "--jobs", "2", env=two_env, timeout=300)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert "in 2 processes" in two.stdout and "processes" not in one.stdout
    said = [result.stdout.split(" dead letters in ")[0].replace(env["LIVELEARN_TOPIC_PREFIX"], "")
            for result, env in ((one, one_env), (two, two_env))]
    assert said[0] == said[1] and f"{TICKS:,} predictions" in said[0] and "8 feedback records" in said[0], said

    compared = {**COMPARED, "dead-letters": "dead_letter"}
    for stage, schema in compared.items():
        ours = {key: [{k: v for k, v in r.items() if k != "error_time_ms"} for r in rs]
                for key, rs in records(one_env, stage, schema, to_end=True).items()}
        theirs = {key: [{k: v for k, v in r.items() if k != "error_time_ms"} for r in rs]
                  for key, rs in records(two_env, stage, schema, to_end=True).items()}
        if stage == "dead-letters":  # they name their source topic, prefix and all
            one_prefix, two_prefix = one_env["LIVELEARN_TOPIC_PREFIX"], two_env["LIVELEARN_TOPIC_PREFIX"]
            theirs = {key: [{k: v.replace(two_prefix, one_prefix) if isinstance(v, str) else v for k, v in r.items()}
                            for r in rs] for key, rs in theirs.items()}
            assert sorted(r["reason_code"] for rs in ours.values() for r in rs) == ["decode_error",
                                                                                     "unknown_prediction"]
        assert ours == theirs, stage
    assert set(records(one_env, "predictions", "prediction", to_end=True)) == {b"BTCUSDT", b"ETHUSDT"}


def test_a_backtest_process_killed_midway_fails_the_run_saying_so(pipeline_env):
    """`backtest --jobs 2` whose second process is killed (as the OOM killer would) while the first
    runs: the run fails, saying which process and partitions and how it ended, instead of waiting for
    a result that cannot come or reporting a backtest of half the partitions."""
    import multiprocessing
    import signal
    import threading
    import time

    from agents.backtest import ShardFailed, run_backtest
    from agents.settings import Settings

    captures = [str(Path(SAMPLE[0]).parents[2] / "ws" / name)
                for name in ("spot_btcusdt_20240808.gz", "spot_ethusdt_20240808.gz")]
    assert livelearn("replay", *captures, "--quiet", env=pipeline_env, timeout=120).returncode == 0
    killed: list[int] = []

    def kill_the_other_process() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for child in multiprocessing.active_children():
                if child.name.startswith("livelearn-backtest-"):
                    time.sleep(0.5)  # before it can have finished (its import alone takes about 2 s here)
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
                    break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_other_process, daemon=True)
    killer.start()
    with pytest.raises(ShardFailed) as failed:
        run_backtest(Settings.from_env(pipeline_env), jobs=2)
    killer.join(timeout=5)
    assert killed
    said = str(failed.value)
    assert said.startswith("backtest process 1 (input partitions ")
    assert "ended with exit code -9 without a result" in said
    assert not [child for child in multiprocessing.active_children() if child.name.startswith("livelearn-backtest-")]


def test_a_backtest_run_again_on_its_topics_says_that_its_records_follow_the_earlier_ones(pipeline_env):
    """A second backtest on the same topic prefix (after a failed run, or by mistake beside a worker)
    publishes its records after the first run's: it says so, before it starts, rather than leaving a
    doubled predictions topic to be found later, and whether a worker's group reads the topics now
    (none here; a running worker's group is found in the test above)."""
    assert livelearn("replay", SAMPLE[0], "--quiet", env=pipeline_env, timeout=120).returncode == 0
    first = livelearn("backtest", "--quiet", env=pipeline_env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "already holds" not in first.stderr
    again = livelearn("backtest", "--quiet", env=pipeline_env, timeout=300)
    assert again.returncode == 0, again.stderr
    prefix = pipeline_env["LIVELEARN_TOPIC_PREFIX"]
    assert f"{prefix}predictions already holds records (1,440 offsets; an earlier backtest" in again.stderr
    assert f"(no group reads {prefix}ticks now)" in again.stderr
    published = records(pipeline_env, "predictions", "prediction", to_end=True)[b"BTCUSDT"]
    assert len(published) == 2 * 1440 and published[:1440] == published[1440:]
