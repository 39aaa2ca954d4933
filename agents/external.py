"""Inputs from outside the market feed, into the same partition pipelines as the ticks: feature vectors
(labelled datasets, vectors computed elsewhere) and external feedback naming a prediction id. Their
offsets are checkpointed with the state they change, like the ticks'."""

from __future__ import annotations

from mode import CrashingSupervisor

from agents.app import Runtime
from agents.checkpoints import PartitionCheckpoints
from agents.steps import finish, origin_of, reject, silently
from schemas.codec import DecodeError
from streams.ticks import is_symbol


def register(runtime: Runtime, checkpoints: PartitionCheckpoints) -> None:
    vectors_codec, feedback_codec = runtime.codecs["external-features"], runtime.codecs["feedback"]

    async def consume(stream, source: str, codec, stage: str, handle) -> None:
        """Decode each unapplied record of ``source``, hand it to the partition's pipeline, publish the
        step (or dead-letter an undecodable record at ``stage``) and mark the offset done."""
        stream = stream.noack()
        async for event, state in checkpoints.unapplied(stream, source):
            message = event.message
            owned = checkpoints.owns(message.partition, state)
            with checkpoints.applying(message.partition):
                try:
                    record = codec.decode(message.value, message.topic, message.partition, message.offset)
                except DecodeError as exc:
                    await reject(runtime, stage, "decode_error", str(exc), message, owned)
                else:
                    await finish(runtime, handle(state, record, origin_of(message)), message, owned)
                await checkpoints.done(stream, event, source, state)

    def vector(state, record, _origin):
        return state.on_vector(record)

    def feedback(state, record, origin):
        # Held feedback (streams.early_feedback) keeps its origin for the dead letter it may become.
        # Keyed as its symbol's ticks are, it is held even before the symbol's first tick: a worker
        # killed before the partition's first checkpoint is succeeded by one that starts over.
        symbol = record["symbol"]
        routed = is_symbol(symbol) and origin[3] == runtime.settings.partition_key(symbol).encode()
        return state.on_feedback(record, origin, routed)

    checkpoints.reapply["external-features"] = silently(vectors_codec, vector)
    checkpoints.reapply["feedback"] = silently(feedback_codec, feedback)

    @runtime.app.agent(runtime.topics["external-features"], name="external_vectors",
                       supervisor_strategy=CrashingSupervisor)
    async def external_vectors(stream):
        await consume(stream, "external-features", vectors_codec, "predict", vector)

    @runtime.app.agent(runtime.topics["feedback"], name="external_feedback",
                       supervisor_strategy=CrashingSupervisor)
    async def external_feedback(stream):
        await consume(stream, "feedback", feedback_codec, "learn", feedback)
