"""The agent tier without a broker: Faust's test_context drives the real agents of a worker built by
the composition root; what they publish is recorded at the runtime's publish (the Kafka path itself is
covered by tests/integration)."""

from __future__ import annotations

import asyncio

import pytest

from agents.settings import Settings
from agents.worker import build
from schemas.codec import AvroCodec
from streams.ticks import make_tick

T0 = 1_700_000_000_000


def worker(tmp_path):
    runtime, agents, published, _ = worker_and_checkpoints(tmp_path)
    return runtime, agents, published


def worker_and_checkpoints(tmp_path):
    settings = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="agenttest.", state_dir=str(tmp_path),
                        members="logreg", horizon_ticks="2")
    runtime, checkpoints = build(settings)
    checkpoints.restored = {}  # nothing to restore: no broker is asked
    checkpoints.reapply = {}  # nor caught up from the topics to the group's position (PartitionCheckpoints._catch_up)
    checkpoints.every_events = 10**9  # and no checkpoint is written
    published: list[tuple[str, bytes | None, dict]] = []

    async def publish(stage, key, record, timestamp_ms=None, partition=None, owned=None):
        if owned is not None and not owned():  # what Runtime.publish does: withheld
            return False
        published.append((stage, key, record))
        return True

    runtime.publish = publish
    agents = {agent.name.rsplit(".", 1)[-1]: agent for agent in runtime.app.agents.values()}
    return runtime, agents, published, checkpoints


def feedback(prediction_id: str) -> bytes:
    """A feedback record as any client would produce it: label 1 for ``prediction_id``."""
    return AvroCodec.for_topic_schema("feedback").encode({
        "prediction_id": prediction_id, "symbol": "BTCUSDT", "event_time_ms": None, "label": 1,
        "realised_return": None, "score": None, "source": "desk", "feedback_time_ms": T0, "matured_tick_index": None})


async def settle(published: list, count: int, timeout: float = 10.0) -> None:
    """Wait until the agent has published ``count`` records (put() returns when the value is taken)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(published) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


def test_ticks_agent_publishes_the_steps_records_in_order_and_dead_letters_garbage(tmp_path):
    runtime, agents, published = worker(tmp_path)
    codec = AvroCodec.for_topic_schema("tick")

    async def scenario():
        async with agents["pipeline"].test_context() as agent:
            for i in range(4):
                tick = make_tick("BTCUSDT", "TRADE", T0 + i * 1000, 100.0 + i, 1.0, is_buyer_maker=i % 2 == 0)
                await agent.put(codec.encode(tick), key=b"BTCUSDT")
            await agent.put(b"not avro", key=b"BTCUSDT")
            await settle(published, 4 * 2 + 2 + 1)

    asyncio.run(scenario())
    stages = [stage for stage, _, _ in published]
    # features + prediction per tick, an outcome per matured one (horizon 2), then the dead letter.
    assert stages == ["features", "predictions", "features", "predictions", "features", "outcomes", "predictions",
                      "features", "outcomes", "predictions", "dead-letters"]
    assert published[-1][2]["reason_code"] == "decode_error" and published[-1][2]["value"] == b"not avro"
    assert runtime.metrics.events.labels("featurize")._value.get() == 4


def put_with_a_minute_passing(tmp_path, values: list[bytes], at: int):
    """The ticks agent fed ``values``; the log throttle's clock moves a minute on once the ``at`` values
    before are published. The runtime and what it published."""
    from agents.log_throttle import LogThrottle

    runtime, agents, published = worker(tmp_path)
    clock = [0.0]
    runtime.dead_letter_lines = LogThrottle(clock=lambda: clock[0])

    async def scenario():
        async with agents["pipeline"].test_context() as agent:
            for i, value in enumerate(values):
                if i == at:
                    await settle(published, at)
                    clock[0] = 60.0
                await agent.put(value, key=b"BTCUSDT")
            await settle(published, len(values))

    asyncio.run(scenario())
    return runtime, published


def test_a_flood_of_bad_records_is_dead_lettered_whole_but_logged_by_the_minute(tmp_path, caplog):
    """Every bad record is a dead letter and counted; the log keeps the first 20 of a stage and reason
    whole, then a line a minute with how many it left out (a record a line buried the log before)."""
    values = [b"not avro %d" % i for i in range(50)]
    with caplog.at_level("WARNING", logger="livelearn"):
        runtime, published = put_with_a_minute_passing(tmp_path, values, at=45)
    assert [record["value"] for _, _, record in published] == values
    assert runtime.metrics.dead_letters.labels("featurize", "decode_error")._value.get() == 50
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dead letter from")]
    assert len(lines) == 21  # the first 20 whole, then the one a minute later
    assert lines[-1].endswith("(25 more decode_error dead letters from featurize since the last line of them: each is "
                              "on the dead-letters topic and counted in livelearn_dead_letters_total)"), lines[-1]


def test_a_defect_that_fails_every_tick_is_dead_lettered_and_its_tracebacks_logged_by_the_minute(tmp_path, caplog,
                                                                                                monkeypatch):
    """An unexpected error inside the core (a defect, not bad input) is dead-lettered as internal_error
    with a traceback in the log; when it fails every tick the tracebacks follow the dead letters' rule."""
    from streams.features import FeatureEngine

    def broken(self, tick):
        raise ZeroDivisionError("a defect")

    monkeypatch.setattr(FeatureEngine, "update", broken)
    codec = AvroCodec.for_topic_schema("tick")
    values = [codec.encode(make_tick("BTCUSDT", "TRADE", T0 + i * 1000, 100.0, 1.0)) for i in range(30)]
    with caplog.at_level("WARNING", logger="livelearn"):
        _, published = put_with_a_minute_passing(tmp_path, values, at=29)
    assert [record["reason_code"] for _, _, record in published] == ["internal_error"] * 30
    failures = [r for r in caplog.records if " failed on " in r.getMessage()]
    assert len(failures) == 21 and all(r.exc_info for r in failures)
    assert failures[-1].getMessage().endswith("(9 more such failures since the last traceback)")


def test_external_feedback_reaches_the_learner_of_its_partition_and_unknown_ids_are_dead_lettered(tmp_path):
    runtime, agents, published = worker(tmp_path)
    tick_codec = AvroCodec.for_topic_schema("tick")

    async def scenario():
        async with agents["pipeline"].test_context() as ticks, agents["external_feedback"].test_context() as fb:
            await ticks.put(tick_codec.encode(make_tick("BTCUSDT", "TRADE", T0, 100.0, 1.0)), key=b"BTCUSDT")
            await settle(published, 2)
            prediction = next(record for stage, _, record in published if stage == "predictions")
            await fb.put(feedback(prediction["prediction_id"]), key=b"BTCUSDT")
            await fb.put(feedback("BTCUSDT-0-0"), key=b"BTCUSDT")
            await settle(published, 3)

    asyncio.run(scenario())
    assert [stage for stage, _, _ in published] == ["features", "predictions", "dead-letters"]
    assert published[-1][2]["reason_code"] == "unknown_prediction"
    assert runtime.metrics.events.labels("learn")._value.get() == 1


def test_an_exception_inside_an_event_marks_its_partition_broken_and_it_is_never_checkpointed(tmp_path):
    """Not bad input (that is dead-lettered) but a failure while an event's outputs are published: the
    partition's state may now be ahead of its outputs, so it is never checkpointed again (the worker
    stops, agents.checkpoints.applying) instead of the agent carrying on over it."""
    runtime, agents, published, checkpoints = worker_and_checkpoints(tmp_path)
    codec = AvroCodec.for_topic_schema("tick")
    accept = runtime.publish

    async def refuse_predictions(stage, key, record, timestamp_ms=None, partition=None, owned=None):
        if stage == "predictions" and record["event_time_ms"] == T0 + 1000:
            raise RuntimeError("1 records refused by the broker")
        return await accept(stage, key, record, timestamp_ms, partition, owned)

    runtime.publish = refuse_predictions
    async def scenario():
        async with agents["pipeline"].test_context() as agent:
            await agent.put(codec.encode(make_tick("BTCUSDT", "TRADE", T0, 100.0, 1.0)), key=b"BTCUSDT", partition=0)
            assert checkpoints.broken == set()
            with pytest.raises(RuntimeError, match="refused"):  # the agent crashes (and with it the worker)
                await agent.put(codec.encode(make_tick("BTCUSDT", "TRADE", T0 + 1000, 101.0, 1.0)), key=b"BTCUSDT",
                                partition=0)
            assert checkpoints.broken == {0}
            before = len(published)
            await asyncio.wait_for(checkpoints.checkpoint(0, force=True), 5)
            assert len(published) == before  # nothing written for a broken partition
            assert not await checkpoints.settle({0}, timeout=1.0)

    asyncio.run(scenario())
    assert [stage for stage, _, _ in published] == ["features", "predictions", "features"]


def test_readiness_follows_the_broker_probe(tmp_path):
    """The probe is a real metadata request of the output producer; nothing listens on port 1, so it gets
    no answer: the worker reads not ready (and the gauge says 0) until an answer comes."""
    import time

    runtime, _, _ = worker(tmp_path)
    runtime.ready = True
    assert runtime.serving
    started = time.monotonic()
    answered = runtime.broker_answers(0.5)
    assert not answered and time.monotonic() - started < 5
    runtime.note_probe(answered, started)
    assert not runtime.serving and runtime.metrics.ready._value.get() == 0
    runtime.note_probe(True, time.monotonic())
    assert runtime.serving and runtime.metrics.ready._value.get() == 1
    runtime._producer = None  # destroyed here, or it retries port 1 (and logs it) for the rest of the run


def test_a_batch_whose_partition_is_revoked_half_way_publishes_nothing_more(tmp_path, monkeypatch):
    """The tick-batches agent gives the event loop back during a long batch (agents.pipeline.TURN_S),
    so a revocation can take the partition while the batch is half-way. From then on the batch stops:
    the next owner applies it whole from its checkpoint, and this worker must not publish for a
    partition it gave up (exactly-once, its transactional producer would fence the new owner's). Here
    the partition comes straight back to this worker, restored from its checkpoint: the batch is not
    recorded as applied on that state, which has not seen it."""
    monkeypatch.setattr("agents.pipeline.TURN_S", 0.0)  # the loop is given back after every tick
    runtime, agents, published, checkpoints = worker_and_checkpoints(tmp_path)
    record = runtime.publish

    async def publish(stage, key, value, timestamp_ms=None, partition=None, owned=None):
        if not await record(stage, key, value, timestamp_ms, partition, owned):
            return False
        if len(published) == 10:  # features and a prediction of five ticks: revoked here, and assigned again
            checkpoints.forget({partition})
            checkpoints.restored = {}  # nothing to read back (no broker here): the partition starts fresh
            await checkpoints.state(partition)
        return True

    runtime.publish = publish
    ticks = [make_tick("BTCUSDT", "TRADE", T0 + i * 1000, 100.0 + i, 1.0) for i in range(50)]

    async def scenario():
        async with agents["pipeline-batches"].test_context() as agent:
            await agent.put(AvroCodec.for_topic_schema("tick_batch").encode({"ticks": ticks}), key=b"BTC")
            await settle(published, 100, timeout=3.0)

    asyncio.run(scenario())
    assert 10 <= len(published) <= 12, [stage for stage, _, _ in published]
    assert checkpoints.offsets[0]["tick-batches"] == -1  # the batch is still to apply


@pytest.mark.parametrize("agent_name", ["pipeline", "external_feedback"])
def test_an_event_whose_partition_is_revoked_in_flight_publishes_nothing_more(tmp_path, agent_name):
    """A single event suspended while its outputs are published (the producer's queue full, the
    partition's transaction committing) when its partition is revoked, here beyond
    LIVELEARN_STOP_TIMEOUT_S and then assigned straight back: its remaining outputs, a dead letter
    included, are withheld (Runtime.publish's ``owned``), and it is not recorded as applied on the
    restored state. The next owner re-applies it whole."""
    runtime, agents, published, checkpoints = worker_and_checkpoints(tmp_path)
    record = runtime.publish
    revoked_after = {"pipeline": 1, "external_feedback": 0}[agent_name]
    attempts: list[str] = []

    async def publish(stage, key, value, timestamp_ms=None, partition=None, owned=None):
        attempts.append(stage)
        if len(attempts) == revoked_after + 1:  # revoked, and assigned again, as this record is queued
            checkpoints.forget({partition})
            checkpoints.restored = {}
            await checkpoints.state(partition)
        return await record(stage, key, value, timestamp_ms, partition, owned)

    runtime.publish = publish

    async def scenario():
        async with agents[agent_name].test_context() as agent:
            if agent_name == "pipeline":
                tick = make_tick("BTCUSDT", "TRADE", T0, 100.0, 1.0)
                await agent.put(AvroCodec.for_topic_schema("tick").encode(tick), key=b"BTC", partition=0)
            else:  # an unknown prediction id keyed otherwise than its symbol: its one output is a dead letter
                await agent.put(feedback("BTCUSDT-0-0"), key=b"BTCUSDT", partition=0)
            await asyncio.sleep(0.2)

    asyncio.run(scenario())
    assert attempts == {"pipeline": ["features", "predictions"], "external_feedback": ["dead-letters"]}[agent_name]
    assert [stage for stage, _, _ in published] == {"pipeline": ["features"], "external_feedback": []}[agent_name]
    assert checkpoints.offsets[0][{"pipeline": "ticks", "external_feedback": "feedback"}[agent_name]] == -1


@pytest.mark.parametrize("first_tick_before", [True, False])
def test_feedback_on_a_prediction_not_yet_made_is_learned_when_the_ticks_agent_makes_it(tmp_path, first_tick_before):
    """The feedback agent may run ahead of the ticks agent (after a restart, one record against a
    backlog): feedback naming a prediction still to be made is held in the partition's state and
    learned when the ticks agent makes it; one whose prediction never comes is dead-lettered then,
    with the feedback's own topic and offset. So too before the symbol's first tick in the partition,
    keyed as its ticks are (a worker killed before its first checkpoint is succeeded by one that starts
    over): on the code before, both were dead-lettered at once."""
    runtime, agents, published = worker(tmp_path)
    tick_codec = AvroCodec.for_topic_schema("tick")

    def tick(i: int) -> bytes:
        return tick_codec.encode(make_tick("BTCUSDT", "TRADE", T0 + i * 1000, 100.0 + i, 1.0))

    async def scenario():
        async with agents["pipeline"].test_context() as ticks, agents["external_feedback"].test_context() as fb:
            if first_tick_before:
                await ticks.put(tick(0), key=b"BTC", partition=0)
                await settle(published, 2)
            await fb.put(feedback(f"BTCUSDT-{T0 + 3000}-4"), key=b"BTC", partition=0)  # made by the 4th tick
            await fb.put(feedback(f"BTCUSDT-{T0 + 3000}-9"), key=b"BTC", partition=0)  # never made
            await asyncio.sleep(0.1)
            assert len(published) == 2 * first_tick_before and runtime.metrics.events.labels("learn")._value.get() == 0
            for i in range(int(first_tick_before), 5):
                await ticks.put(tick(i), key=b"BTC", partition=0)
            await settle(published, 2 * 5 + 2 + 1)

    asyncio.run(scenario())
    assert runtime.metrics.events.labels("learn")._value.get() == 1
    assert runtime.metrics.model_events.labels("FEEDBACK_HELD")._value.get() == 2
    [dead] = [record for stage, _, record in published if stage == "dead-letters"]
    assert dead["reason_code"] == "unknown_prediction" and dead["source_topic"].endswith("feedback")
    assert dead["source_offset"] == 1 and f"BTCUSDT-{T0 + 3000}-9" in dead["reason"]


@pytest.mark.parametrize("agent_name", ["pipeline", "external_feedback"])
def test_a_restore_that_a_revocation_overtakes_is_not_kept_and_its_event_waits_for_the_owner(tmp_path, agent_name):
    """The partition is revoked while its checkpoints are read for the first event that asks for it. The
    restore is not kept and the event is neither applied nor recorded: the partition's next owner reads
    it again from the group's position. Kept, as before, the restore published that event for a
    partition this worker might no longer own, and a partition that came back later found it as it
    stood, without the events its other owner had applied meanwhile. The same event, read again once
    the partition is this worker's again, is applied to a state restored then."""
    runtime, agents, published, checkpoints = worker_and_checkpoints(tmp_path)
    reads: list[int] = []

    async def load(partitions=()):
        reads.append(len(reads))
        if len(reads) == 1:  # the rebalance comes while the first read is under way
            checkpoints.forget({0})
        checkpoints.restored = {}  # nothing to read back (no broker here): the partition starts fresh

    checkpoints.restored = None
    checkpoints.load = load
    if agent_name == "pipeline":
        value = AvroCodec.for_topic_schema("tick").encode(make_tick("BTCUSDT", "TRADE", T0, 100.0, 1.0))
        outputs = ["features", "predictions"]
    else:  # an unknown prediction id keyed otherwise than its symbol: its one output is a dead letter
        value, outputs = feedback("BTCUSDT-0-0"), ["dead-letters"]
    stage = {"pipeline": "ticks", "external_feedback": "feedback"}[agent_name]
    key = {"pipeline": b"BTC", "external_feedback": b"BTCUSDT"}[agent_name]

    async def scenario():
        async with agents[agent_name].test_context() as agent:
            await agent.put(value, key=key, partition=0)
            await asyncio.sleep(0.1)
            assert published == [] and 0 not in checkpoints.states and 0 not in checkpoints.offsets
            await agent.put(value, key=key, partition=0)  # read again from the group's position
            await settle(published, len(outputs))

    asyncio.run(scenario())
    assert reads == [0]  # the fake read leaves nothing to read again (a real one reads again, see load)
    assert [stage for stage, _, _ in published] == outputs
    assert checkpoints.offsets[0][stage] == 1  # test_context numbers the second put offset 1


def test_a_checkpoint_of_another_version_is_described_by_the_settings_that_changed():
    """The warning of a fresh start names what changed where the old state can be read, and says
    "another format" where it cannot or holds no configuration, without failing the restore."""
    import dataclasses
    import types
    import zlib

    from agents.checkpoints import PartitionCheckpoints
    from streams import snapshots
    from streams.pipeline import PartitionPipeline, PipelineConfig

    configured = PipelineConfig()
    old = dataclasses.replace(configured, learner=dataclasses.replace(configured.learner, members=("logreg",)))
    checkpoints = types.SimpleNamespace(configured=configured)

    def describe(state: bytes) -> str:
        return PartitionCheckpoints._differences(checkpoints, {"state": state})  # type: ignore[arg-type]

    written = zlib.compress(snapshots.dumps(PartitionPipeline(old)))
    assert describe(written) == (f"Changed: learner.members: ('logreg',) -> {configured.learner.members!r}.")
    assert describe(zlib.compress(snapshots.dumps({"ticks_seen": 11}))) == "Its state is of another format."
    assert describe(b"not zlib") == "Its state is of another format (error)."


def test_a_restore_that_a_revocation_overtakes_leaves_the_checkpoints_it_read_for_the_next_restore(tmp_path):
    """The read of the checkpoints outlasts a rebalance (a broker away, read again after it), and the
    restore it serves is not kept. The checkpoints it read are the partition's next restore's: taken off
    the read and dropped, as before, the next restore found none without reading again, and the partition
    started new, caught up from the topic's first event (a chaos run's worker, 2026-12-07)."""
    _, _, _, checkpoints = worker_and_checkpoints(tmp_path)
    newest = {"sequence": 5, "version": "another", "state": b"", "offsets": {}}

    async def load(partitions=()):
        checkpoints.forget({0})  # the rebalance comes while the read is under way
        checkpoints.restored, checkpoints.covered = {0: [newest]}, None

    checkpoints.restored = None
    checkpoints.load = load
    assert asyncio.run(checkpoints.state(0)) is None
    assert checkpoints.restored == {0: [newest]}
