"""Two agents on one partition: a checkpoint never holds an event's effect without its offset.

The ticks, tick-batches and feedback agents apply their events to the same partition's state. An
agent can be suspended half-way through an event, its effect on the state already made and its
outputs still being published (the producer's queue full, the partition's transaction committing).
If another agent's event completes meanwhile and its ``done`` writes the partition's checkpoint,
that checkpoint holds the first event's effect while its offset still says it was not applied: a
restore applies it a second time (a tick refused as a repeat, its unpublished outputs never sent;
feedback learned twice). This test builds the interleaving with the worker's own checkpoint code on
a real broker and reads back every checkpoint written.

The same code meets revocations: an event half-way when its partition is given up publishes nothing
more (under exactly-once it would fence the partition's next owner), and a revocation waits for a
checkpoint already being written.
"""

from __future__ import annotations

import asyncio
import zlib
from types import SimpleNamespace

import pytest

from agents.app import Runtime
from agents.checkpoints import PartitionCheckpoints
from agents.settings import Settings
from agents.topics import INPUT_STAGES, create_topics
from connectors.topic_end import TopicToEnd
from schemas.codec import AvroCodec
from streams import snapshots

pytestmark = pytest.mark.integration


class _Stream:
    """The part of a manual-ack Faust stream the checkpoints use: its events and their acks."""

    def __init__(self, topic: str, offsets: list[int]):
        self.messages = [SimpleNamespace(topic=topic, partition=0, offset=offset) for offset in offsets]
        self.acked: list[int] = []

    async def events(self):
        for message in self.messages:
            yield SimpleNamespace(message=message)

    async def ack(self, event) -> None:
        self.acked.append(event.message.offset)


def _written_checkpoints(settings: Settings, runtime: Runtime) -> list[tuple[dict, dict]]:
    """(state, offsets) of every checkpoint of partition 0 on the topic, oldest first."""
    codec = AvroCodec.for_topic_schema("checkpoint")
    # stable: a commit returns before the broker has written its markers, and until then a read_committed
    # read ends short of the committed records (the exactly-once case read none once).
    with TopicToEnd(settings.client_config(), runtime.topic_names["checkpoints"], timeout=20, stable=True) as reader:
        records = [codec.decode(m.value()) for m in reader if m.key().startswith(b"pipeline:0:")]
    assert all(record["parts"] == 1 for record in records)
    return [(snapshots.loads(zlib.decompress(r["state"])), r["offsets"])
            for r in sorted(records, key=lambda r: r["sequence"])]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_checkpoint_waits_for_another_agents_event_half_way_on_the_partition(pipeline_env, guarantee):
    settings = Settings.from_env({**pipeline_env, "LIVELEARN_PROCESSING_GUARANTEE": guarantee})
    create_topics(settings)
    from confluent_kafka import Producer

    producer = Producer(settings.client_config())
    for stage in ("ticks", "feedback"):  # a restore refuses offsets past the end of an input partition
        for i in range(3):
            producer.produce(f"{settings.topic_prefix}{stage}", key=b"X", value=b"%d" % i, partition=0)
    assert producer.flush(30) == 0
    runtime = Runtime(settings, faust=False)
    checkpoints = PartitionCheckpoints(runtime, "pipeline", INPUT_STAGES, "v", factory=dict, every_events=1)
    ticks, feedback = _Stream("ticks", [0, 1]), _Stream("feedback", [0])

    async def agent(stream: _Stream, stage: str, half_way: asyncio.Event | None, resume: asyncio.Event | None):
        async for event, state in checkpoints.unapplied(stream, stage):
            state[stage] = state.get(stage, 0) + 1  # the event's effect, made before its outputs are sent
            if half_way is not None and resume is not None:
                half_way.set()
                await resume.wait()  # suspended while publishing its outputs
            await checkpoints.done(stream, event, stage, state)

    async def scenario():
        half_way, resume = asyncio.Event(), asyncio.Event()
        feedback_agent = asyncio.create_task(agent(feedback, "feedback", half_way, resume))
        await half_way.wait()
        await agent(ticks, "ticks", None, None)  # both ticks done while the feedback event is half-way
        resume.set()
        await feedback_agent
        await checkpoints.checkpoint(0)

    asyncio.run(asyncio.wait_for(scenario(), 120))
    written = _written_checkpoints(settings, runtime)
    assert written, "no checkpoint was written"
    for state, offsets in written:
        # Each stage's count of applied events equals what its offset says was applied.
        assert state.get("ticks", 0) == offsets["ticks"] + 1, (state, offsets)
        assert state.get("feedback", 0) == offsets["feedback"] + 1, (state, offsets)
    assert written[-1] == ({"ticks": 2, "feedback": 1}, {**written[-1][1], "ticks": 1, "feedback": 0})
    assert ticks.acked == [0, 1] and feedback.acked == [0]


def test_an_event_in_flight_at_a_revocation_does_not_fence_the_partitions_next_owner(pipeline_env):
    """Exactly-once. An event half-way on worker A (its output waiting for the partition's transaction)
    when the partition is revoked beyond LIVELEARN_STOP_TIMEOUT_S and taken by worker B, whose
    transactional producer fences A's. When A's event goes on, its output is withheld: produced, it
    re-created the partition's transactional producer and fenced B, whose next checkpoint then failed
    ("transaction of partition 0 failed": B restarted)."""
    settings = Settings.from_env({**pipeline_env, "LIVELEARN_PROCESSING_GUARANTEE": "exactly_once"})
    create_topics(settings)
    from confluent_kafka import Producer

    producer = Producer(settings.client_config())
    for i in range(3):
        producer.produce(f"{settings.topic_prefix}ticks", key=b"X", value=b"%d" % i, partition=0)
    assert producer.flush(30) == 0
    a, b = Runtime(settings, faust=False), Runtime(settings, faust=False)
    on_a = PartitionCheckpoints(a, "pipeline", INPUT_STAGES, "v", factory=dict, every_events=1)
    on_b = PartitionCheckpoints(b, "pipeline", INPUT_STAGES, "v", factory=dict, every_events=1)
    origin = (f"{settings.topic_prefix}ticks", 0, 0, b"X", b"0")

    async def apply(runtime: Runtime, checkpoints: PartitionCheckpoints, stream: _Stream, reason: str,
                    half_way: asyncio.Event | None = None, resume: asyncio.Event | None = None) -> None:
        async for event, state in checkpoints.unapplied(stream, "ticks"):
            state["ticks"] = state.get("ticks", 0) + 1
            if half_way is not None and resume is not None:
                half_way.set()
                await resume.wait()
            await runtime.dead_letter("featurize", "test", reason, *origin,
                                      owned=checkpoints.owns(event.message.partition, state))
            await checkpoints.done(stream, event, "ticks", state)

    async def scenario():
        half_way, resume = asyncio.Event(), asyncio.Event()
        in_flight = asyncio.create_task(apply(a, on_a, _Stream("ticks", [0]), "from A", half_way, resume))
        await half_way.wait()
        assert not await on_a.settle({0}, timeout=0.2)  # the event is still half-way
        on_a.forget({0})
        await apply(b, on_b, _Stream("ticks", [0]), "from B")  # restores (fencing A), applies, checkpoints
        resume.set()
        await in_flight
        await apply(b, on_b, _Stream("ticks", [1]), "from B again")  # commits: B was not fenced
        await on_b.checkpoint(0)

    asyncio.run(asyncio.wait_for(scenario(), 120))
    codec = AvroCodec.for_topic_schema("dead_letter")
    config = {**settings.client_config(), "isolation.level": "read_committed"}
    with TopicToEnd(config, a.topic_names["dead-letters"], timeout=20, stable=True) as reader:
        reasons = [codec.decode(m.value())["reason"] for m in reader]
    assert reasons == ["from B", "from B again"]
    assert a.metrics.withheld.labels("dead-letters")._value.get() == 1
    written = _written_checkpoints(settings, b)
    assert written[-1] == ({"ticks": 2}, {**written[-1][1], "ticks": 1})


def test_a_revocation_waits_for_a_checkpoint_being_written(pipeline_env):
    """The quiet timer's checkpoint of a partition may be under way (compressing, or waiting for the
    broker) when the partition is revoked. The revocation waits for it: its events were acked by no
    other checkpoint, and a write cut short by the revocation is not made at all."""
    settings = Settings.from_env({**pipeline_env, "LIVELEARN_PROCESSING_GUARANTEE": "exactly_once"})
    create_topics(settings)
    from confluent_kafka import Producer

    producer = Producer(settings.client_config())
    producer.produce(f"{settings.topic_prefix}ticks", key=b"X", value=b"0", partition=0)
    assert producer.flush(30) == 0
    runtime = Runtime(settings, faust=False)
    checkpoints = PartitionCheckpoints(runtime, "pipeline", INPUT_STAGES, "v", factory=dict, every_events=10)
    ticks = _Stream("ticks", [0])

    async def scenario():
        async for event, state in checkpoints.unapplied(ticks, "ticks"):
            state["ticks"] = 1
            await checkpoints.done(ticks, event, "ticks", state)
        writing = asyncio.create_task(checkpoints.checkpoint(0))  # as the quiet timer does
        await asyncio.sleep(0)
        assert checkpoints.writing == {0: 1}
        assert await checkpoints.settle({0}, timeout=30)
        assert writing.done()
        checkpoints.forget({0})

    asyncio.run(asyncio.wait_for(scenario(), 120))
    assert _written_checkpoints(settings, runtime) == [({"ticks": 1}, {"ticks": 0, "feedback": -1,
                                                                        "tick-batches": -1,
                                                                        "external-features": -1})]
    assert ticks.acked == [0]
