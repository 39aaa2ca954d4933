"""Chaos (issue #19), in both processing guarantees, on a private real broker, over the shipped sample:

* ticks, replayed at a pace that spans the plan: 10 SIGKILLs (2 of them during start-up), 5 SIGTERMs,
  one broker restart (SIGKILL, 10 s away) and one rebalance (a second worker joins, then the first is
  killed), each at a random moment while ticks arrive;
* then external feedback naming 1,200 prediction ids, with 2 more SIGKILLs and 1 SIGTERM while it is
  learned.

Compared with the same partition pipeline run in process without interruption (ticks, then the
feedback in order): every prediction, outcome and alert is there and equal, and the final models
(read back from the last checkpoint) give the same probabilities, so every feedback event was learned
exactly once. exactly_once: nothing repeated (read_committed). at_least_once: repeats are identical,
counted, and there are some (the kills met a stream in flight). Every SIGTERM exits 0 within
LIVELEARN_STOP_TIMEOUT_S plus Faust's own stop. The counts are printed as a RESULT line
(docs/STATUS.md has them).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zlib

import pytest

from agents.app import Runtime, pipeline_config
from agents.checkpoints import read_checkpoints
from agents.settings import Settings
from agents.topics import INPUT_STAGES
from agents.trust import CheckpointSigner, checkpoint_key
from connectors.recorded import read_file
from schemas.codec import AvroCodec
from streams import snapshots
from streams.pipeline import PartitionPipeline
from tests.conftest import ROOT, free_port, livelearn
from tests.integration.test_restart import wait_for_predictions
from tests.kafka_io import paced_replay, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

FILES = [ROOT / "data" / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip",
         ROOT / "data" / "binance" / "klines" / "spot" / "ETHUSDT-1m-2022-08-14.zip"]
TICKS = 2880
# Each file's day of one-minute klines in about a minute (24 ticks a second), one file after the other.
REPLAY_SPEED = 1440
STOP_TIMEOUT_S = 10
FAUST_STOP_S = 10
COMPARED = {"predictions": ("prediction", "prediction_id"), "outcomes": ("feedback", "prediction_id"),
            "alerts": ("drift_alert", "alert_id")}


def feedback_events(predictions: dict[str, dict]) -> list[dict]:
    by_symbol: dict[str, list[str]] = {}
    for pid, record in predictions.items():
        by_symbol.setdefault(record["symbol"], []).append(pid)
    events = []
    for symbol, ids in sorted(by_symbol.items()):
        for pid in ids[-600:]:  # within the learner's memory of issued predictions
            events.append({"symbol": symbol, "prediction_id": pid, "label": zlib.crc32(pid.encode()) % 2,
                           "feedback_time_ms": 1_800_000_000_000})
    return events


def uninterrupted(settings: Settings) -> tuple[dict[str, dict[str, dict]], dict[str, PartitionPipeline]]:
    """Records per stage by id, and the pipeline of each symbol, of an in-process run (ticks only)."""
    out: dict[str, dict[str, dict]] = {stage: {} for stage in COMPARED}
    pipelines = {}
    for path in FILES:
        pipeline = PartitionPipeline(pipeline_config(settings))
        for item in read_file(path):
            pipelines[item.tick["symbol"]] = pipeline
            for output in pipeline.on_tick(item.tick).records:
                if output.stage in out:
                    record = {k: v for k, v in output.record.items() if k != "latency_ms"}
                    out[output.stage][(record[COMPARED[output.stage][1]], record.get("status"))] = record
    return out, pipelines


def read_outputs(env: dict, want: dict[str, int]) -> tuple[dict[str, dict], dict[str, int]]:
    """Each compared stage's records by id, and how many were repeats (a repeat must be identical); a
    stage is read until ``want[stage]`` distinct records have arrived and 4 s pass without another."""
    records, repeats = {}, {}
    for stage, (schema, id_field) in COMPARED.items():
        codec = AvroCodec.for_topic_schema(schema)
        decoded: dict = {}  # (partition, offset) -> record: each record decoded once

        def identity(message, codec=codec, id_field=id_field, decoded=decoded):
            record = decoded[(message.partition(), message.offset())] = codec.decode(message.value())
            return record[id_field], record.get("status")

        seen: dict = {}
        repeats[stage] = 0
        for message in read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"] + stage, idle=4.0,
                                  timeout=180, distinct=(identity, want[stage])):
            record = decoded.pop((message.partition(), message.offset()), None)
            if record is None:
                record = codec.decode(message.value())
            record = {k: v for k, v in record.items() if k != "latency_ms"}
            key = (record[id_field], record.get("status"))
            if key in seen:
                repeats[stage] += 1
                assert seen[key] == record, f"a repeated {stage} record differs"
            seen[key] = record
        records[stage] = seen
    return records, repeats


def final_learners(settings: Settings) -> tuple[dict, dict[int, int]]:
    """The learners of the newest checkpoint of every partition, and the offset of the last feedback
    record each of those checkpoints reflects (-1: none)."""
    runtime = Runtime(settings, faust=False)
    signer = CheckpointSigner(checkpoint_key(settings), runtime.topic_names["checkpoints"])
    valid, refused, _ = read_checkpoints(runtime, "pipeline", INPUT_STAGES, signer)
    assert not refused
    learners, feedback = {}, {}
    for partition, records in valid.items():
        pipeline = snapshots.loads(zlib.decompress(records[0]["state"]))
        learners.update(pipeline.learners)
        feedback[partition] = records[0]["offsets"].get("feedback", -1)
    return learners, feedback


def probe(learners: dict, vectors: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Each member's probability on the symbol's last feature vector: equal models give equal numbers."""
    return {symbol: {name: member.predict_proba_one(vectors[symbol])[1]
                     for name, member in learner.ensemble.members.items()}
            for symbol, learner in sorted(learners.items())}


class Chaos:
    def __init__(self, worker_factory, settings: dict, env: dict, rng: random.Random):
        self.factory, self.settings, self.env, self.rng = worker_factory, settings, env, rng
        self.kills = self.terms = 0
        self.stop_seconds: list[float] = []
        self.worker = self.factory(self.settings).start(timeout=120)

    def kill(self):
        time.sleep(self.rng.uniform(0.0, 0.5))
        self.worker.stop(kill=True)
        self.kills += 1
        self.worker = self.factory(self.settings).start(timeout=120)

    def term(self):
        time.sleep(self.rng.uniform(0.0, 0.5))
        started = time.monotonic()
        self.worker.process.send_signal(signal.SIGTERM)
        assert self.worker.process.wait(STOP_TIMEOUT_S + FAUST_STOP_S + 20) == 0
        self.stop_seconds.append(time.monotonic() - started)
        self.terms += 1
        self.worker = self.factory(self.settings).start(timeout=120)

    def kill_during_start_up(self):
        log = open(self.worker.log_path.with_suffix(".startup.log"), "ab")
        process = subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], cwd=ROOT,
                                   env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(self.rng.uniform(0.5, 4.0))
        process.kill()
        process.wait(10)
        self.kills += 1

    def rebalance(self):
        second = self.factory({**self.settings, "LIVELEARN_WEB_PORT": str(free_port())}).start(timeout=120)
        time.sleep(self.rng.uniform(3.0, 6.0))
        self.worker.stop(kill=True)
        self.kills += 1
        self.worker = second


@pytest.mark.timeout(900)
@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_chaos_then_feedback_equal_an_uninterrupted_run(guarantee, private_broker_for_module, worker_factory, pipeline_env,
                                                        run_id):
    private_broker = private_broker_for_module
    rng = random.Random(f"{guarantee}-{run_id}")
    settings = {"KAFKA_BOOTSTRAP_SERVERS": private_broker.bootstrap, "LIVELEARN_PROCESSING_GUARANTEE": guarantee,
                "LIVELEARN_MEMBERS": "logreg", "LIVELEARN_MODEL_CHECKPOINT_EVENTS": "200",
                "LIVELEARN_STOP_TIMEOUT_S": str(STOP_TIMEOUT_S), "LIVELEARN_LOG_LEVEL": "info",
                "LIVELEARN_DRIFT_WINDOW": "200", "LIVELEARN_DRIFT_WARMUP": "100"}
    env = {**pipeline_env, **settings}
    expected, pipelines = uninterrupted(Settings.from_env(env))
    assert expected["alerts"], "the comparison should cover alerts too"

    chaos = Chaos(worker_factory, settings, env, rng)
    # Paced, so that the chaos meets ticks in flight: replayed at full speed, a fast machine had applied
    # the whole backlog before the second step, and most kills met an idle worker (0 repeats).
    replayed: list[int] = []
    replaying = threading.Thread(target=paced_replay, args=(Settings.from_env(env), FILES, REPLAY_SPEED, replayed))
    replaying.start()
    plan = ["kill", "term", "startup", "kill", "term", "broker", "kill", "kill", "term", "rebalance", "kill",
            "startup", "term", "kill", "kill", "term"]
    for step, what in enumerate(plan, 1):
        assert wait_for_predictions(env, 120 * step, 240) >= 120 * step, what
        if what == "kill":
            chaos.kill()
        elif what == "term":
            chaos.term()
        elif what == "startup":
            chaos.worker.stop(kill=True)
            chaos.kills += 1
            chaos.kill_during_start_up()
            chaos.worker = chaos.factory(settings).start(timeout=120)
        elif what == "broker":
            os.kill(private_broker.pid(), signal.SIGKILL)
            time.sleep(10)
            private_broker.up(wait_s=180)
        elif what == "rebalance":
            chaos.rebalance()
    assert wait_for_predictions(env, TICKS, 300) >= TICKS
    replaying.join(120)
    assert replayed == [TICKS // len(FILES)] * len(FILES)

    feedback = feedback_events({pid: r for (pid, _), r in expected["predictions"].items()})
    lines = "".join(json.dumps(f) + "\n" for f in feedback)
    assert livelearn("produce", "feedback", env=env, input=lines, timeout=120).returncode == 0
    last_feedback: dict[int, int] = {}  # partition -> offset of its last feedback record
    for message in read_topic(env["KAFKA_BOOTSTRAP_SERVERS"], env["LIVELEARN_TOPIC_PREFIX"] + "feedback", to_end=True):
        last_feedback[message.partition()] = max(last_feedback.get(message.partition(), -1), message.offset())
    assert last_feedback, "no feedback record read back"
    for what in ("kill", "term", "kill"):
        getattr(chaos, what)()
    time.sleep(5.0)
    chaos.term()  # the last stop checkpoints what was learned
    chaos.worker.stop()
    # A stop checkpoints what the worker had read by then, and on a loaded machine (three test lanes on two
    # cores) the last stop can come before the restarted worker has read all the feedback (one run's final
    # model of one symbol differed, 2026-12-02, as one with feedback still unread would). So: start it
    # again until the checkpoints reflect every feedback record (a record learned twice or lost still
    # fails the comparison below).
    restarts = 0
    while True:
        learners, learned_through = final_learners(Settings.from_env(env))
        if all(learned_through.get(p, -1) >= last for p, last in last_feedback.items()):
            break
        if restarts == 6:
            pytest.fail(f"the checkpoints never reflected every feedback record: {learned_through} < {last_feedback}")
        restarts += 1
        chaos.worker = chaos.factory(settings).start(timeout=120)
        time.sleep(5.0)
        chaos.worker.stop()

    got, repeats = read_outputs(env, {stage: len(expected[stage]) for stage in COMPARED})
    for stage in COMPARED:
        assert got[stage] == expected[stage], stage
    if guarantee == "exactly_once":
        assert repeats == dict.fromkeys(COMPARED, 0)
    else:  # outputs since the last checkpoint come again after a SIGKILL: the kills met a flowing stream
        assert repeats["predictions"] > 0
    for event in feedback:
        pipeline = pipelines[event["symbol"]]
        assert pipeline.on_feedback({**event, "event_time_ms": None, "realised_return": None, "score": None,
                                     "source": "external", "matured_tick_index": None}).rejection is None
    last_vectors = {}
    for path in FILES:
        engine = PartitionPipeline(pipeline_config(Settings.from_env(env))).engine
        for item in read_file(path):
            vector = engine.update(item.tick)
            if vector is not None:
                last_vectors[vector["symbol"]] = {k: v for k, v in vector["values"].items()}
    want = probe({s: p.learners[s] for s, p in pipelines.items()}, last_vectors)
    assert probe(learners, last_vectors) == want
    assert chaos.kills >= 10 + 2 and chaos.terms >= 5 + 1
    assert max(chaos.stop_seconds) <= STOP_TIMEOUT_S + FAUST_STOP_S
    print("RESULT " + json.dumps({"bench": "chaos", "guarantee": guarantee, "sigkills": chaos.kills,
                                  "sigterms": chaos.terms, "broker_restarts": 1, "rebalances": 1,
                                  "feedback_events": len(feedback), "restarts_until_feedback_read": restarts,
                                  "predictions": len(got["predictions"]),
                                  "lost": sum(len(set(expected[s]) - set(got[s])) for s in COMPARED),
                                  "different": sum(got[s] != expected[s] for s in COMPARED),
                                  "repeated": repeats, "max_stop_s": round(max(chaos.stop_seconds), 2)}))
