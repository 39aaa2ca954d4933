"""Inputs from outside the market feed, into the same partition pipelines as the ticks: feature vectors
(labelled datasets, vectors computed elsewhere) and external feedback naming a prediction id. Their
offsets are checkpointed with the state they change, like the ticks'."""

from __future__ import annotations

from agents.app import Runtime
from agents.checkpoints import PartitionCheckpoints
from agents.steps import finish, reject
from schemas.codec import DecodeError


def register(runtime: Runtime, checkpoints: PartitionCheckpoints) -> None:
    vectors_codec, feedback_codec = runtime.codecs["external-features"], runtime.codecs["feedback"]
    learned = runtime.metrics.events.labels("learn")

    @runtime.app.agent(runtime.topics["external-features"], name="external_vectors")
    async def external_vectors(stream):
        stream = stream.noack()
        async for event, state in checkpoints.unapplied(stream, "external-features"):
            message = event.message
            try:
                vector = vectors_codec.decode(message.value, message.topic, message.partition, message.offset)
            except DecodeError as exc:
                await reject(runtime, "predict", "decode_error", str(exc), message)
            else:
                await finish(runtime, state.on_vector(vector), message)
            await checkpoints.done(stream, event, "external-features")

    @runtime.app.agent(runtime.topics["feedback"], name="external_feedback")
    async def external_feedback(stream):
        stream = stream.noack()
        async for event, state in checkpoints.unapplied(stream, "feedback"):
            message = event.message
            try:
                feedback = feedback_codec.decode(message.value, message.topic, message.partition, message.offset)
            except DecodeError as exc:
                await reject(runtime, "learn", "decode_error", str(exc), message)
            else:
                step = state.on_feedback(feedback)
                learned.inc(step.rejection is None)
                await finish(runtime, step, message)
            await checkpoints.done(stream, event, "feedback")
