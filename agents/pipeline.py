"""The ticks agents: each tick through its partition's pipeline (features, predictions, outcomes,
learning, drift), the step's records published (agents.steps), checkpointed per partition. Ticks come
one a record (the ticks topic) or several (the tick-batches topic, connectors.batching): a batch's
ticks are applied one by one, exactly as single ticks are, with one framework round trip for all."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from mode import CrashingSupervisor

from agents.app import Runtime
from agents.checkpoints import PartitionCheckpoints
from agents.steps import batch_steps, finish, finish_released, origin_of, reject
from schemas.codec import DecodeError

STAGE = "ticks"
BATCHES = "tick-batches"


def register(runtime: Runtime, checkpoints: PartitionCheckpoints) -> None:
    latency = runtime.metrics.latency.labels("featurize")
    tick_codec = runtime.codecs[STAGE]

    def ticks_agent(stage: str, name: str, apply: Callable[[Any, dict, Any], Awaitable[None]]) -> None:
        """An agent of one ticks topic: decode each record with the stage's codec (a record that does
        not decode is dead-lettered), ``apply`` it to its partition's pipeline, record it as done.
        An exception that escapes an event (bad input never does: it is dead-lettered) ends the worker
        instead of Faust restarting the agent in place over a state that may be ahead of its outputs
        (agents.checkpoints.applying); the next owner resumes from the last checkpoint."""
        codec = runtime.codecs[stage]

        @runtime.app.agent(runtime.topics[stage], name=name, supervisor_strategy=CrashingSupervisor)
        async def agent(stream):
            stream = stream.noack()
            async for event, state in checkpoints.unapplied(stream, stage):
                message = event.message
                with checkpoints.applying(message.partition):
                    started = time.perf_counter()
                    try:
                        record = codec.decode(message.value, message.topic, message.partition, message.offset)
                    except DecodeError as exc:
                        latency.observe(time.perf_counter() - started)
                        await reject(runtime, "featurize", "decode_error", str(exc), message)
                    else:
                        await apply(state, record, message)
                    await checkpoints.done(stream, event, stage)

    async def one_tick(state: Any, tick: dict, message: Any) -> None:
        await finish(runtime, state.on_tick(tick, int(time.time() * 1000), origin_of(message)), message)

    async def batch_of_ticks(state: Any, batch: dict, message: Any) -> None:
        for step, origin in batch_steps(state, batch["ticks"], int(time.time() * 1000), origin_of(message),
                                        tick_codec.encode):
            await finish_released(runtime, [(step, origin), *step.released])

    ticks_agent(STAGE, "pipeline", one_tick)
    ticks_agent(BATCHES, "pipeline-batches", batch_of_ticks)

    window_ms = runtime.pipeline.reorder_ms
    if window_ms > 0:
        quiet_ms = min(window_ms, 2000)

        @runtime.app.timer(interval=0.5, name="reorder-quiet-partitions")
        async def release_quiet_partitions():
            """A reorder window holds the last ticks until newer ones arrive; when none has for
            min(window, 2 s) of wall time (a replay ended, a source went quiet), what it holds is let
            out (and checkpointed)."""
            now_ms = int(time.time() * 1000)
            for partition, state in list(checkpoints.states.items()):
                if partition in checkpoints.in_flight or not len(state.held):
                    continue
                if state.last_arrival_ms is not None and now_ms - state.last_arrival_ms < quiet_ms:
                    continue
                await finish_released(runtime, state.flush(now_ms))
                await checkpoints.checkpoint(partition, force=True)
