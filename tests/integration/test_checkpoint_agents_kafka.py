"""Two agents on one partition: a checkpoint never holds an event's effect without its offset.

The ticks, tick-batches and feedback agents apply their events to the same partition's state. An
agent can be suspended half-way through an event, its effect on the state already made and its
outputs still being published (the producer's queue full, the partition's transaction committing).
If another agent's event completes meanwhile and its ``done`` writes the partition's checkpoint,
that checkpoint holds the first event's effect while its offset still says it was not applied: a
restore applies it a second time (a tick refused as a repeat, its unpublished outputs never sent;
feedback learned twice). This test builds the interleaving with the worker's own checkpoint code on
a real broker and reads back every checkpoint written.
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
    with TopicToEnd(settings.client_config(), runtime.topic_names["checkpoints"], timeout=20) as reader:
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
