"""What an agent does with a pipeline step, and the per-event error policy, written once.

Every agent decodes its input, hands it to the partition pipeline and passes the result here: the
records are published in order, the statistics go to the metrics, and a rejection becomes a dead letter
with its reason code (the original bytes and where they came from), counted and logged, after which the
agent goes on with the next input. An input that cannot be decoded is a rejection too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from agents.app import Runtime
from schemas.codec import DecodeError
from streams.pipeline import Step

log = logging.getLogger("livelearn.agents")
Owned = Callable[[], bool] | None


async def finish(runtime: Runtime, step: Step, message: Any, owned: Owned = None) -> None:
    """Publish a step's records, export its statistics, dead-letter its rejection (never raises for a
    bad input: an unexpected error is logged with its traceback and dead-lettered as internal_error).
    Ticks a reorder window released are finished each with the origin they were admitted with.
    ``owned``: whether the partition is still this worker's, with the state the step was made on; once
    it is not, nothing more is published (``Runtime.publish``)."""
    await _finish_one(runtime, step, origin_of(message), owned)
    for released, held_origin in step.released:
        await _finish_one(runtime, released, held_origin, owned)


async def finish_released(runtime: Runtime, released: list[tuple[Step, Any]], owned: Owned = None) -> None:
    """Ticks a reorder window let out without an input event (its input went quiet)."""
    for step, origin in released:
        await _finish_one(runtime, step, origin, owned)


def batch_steps(pipeline: Any, ticks: list[dict[str, Any]], now_ms: int, origin: tuple,
                encode_tick: Callable[[dict[str, Any]], bytes]) -> Iterator[tuple[Step, tuple]]:
    """A tick-batches record's ticks applied one by one, each step with the origin its outputs carry:
    the batch's, except that a refused tick is dead-lettered alone, as a Tick record (replayable onto
    the ticks topic), with the batch's topic and offset. The worker's agent and the backtest both
    apply batches through this."""
    for tick in ticks:
        step = pipeline.on_tick(tick, now_ms, origin)
        yield step, origin if step.rejection is None else (*origin[:4], encode_tick(tick))


def silently(codec: Any, handle: Callable[[Any, dict[str, Any], tuple], Any]) -> Callable[[Any, bytes, tuple], None]:
    """An input record applied to a state again, publishing nothing (a restore catching up with
    events whose outputs were published when they were first applied, agents.checkpoints._catch_up):
    ``handle(state, record, origin)`` on the decoded record; one that does not decode was
    dead-lettered when it was first met."""
    def apply(state: Any, value: bytes, origin: tuple) -> None:
        try:
            record = codec.decode(value, *origin[:3])
        except DecodeError:
            return
        handle(state, record, origin)
    return apply


def origin_of(message: Any) -> tuple:
    """Where an input came from, as plain values (it may be held in a checkpointed reorder buffer)."""
    return (message.topic, message.partition, message.offset, message.key, message.value)


async def _finish_one(runtime: Runtime, step: Step, origin: tuple, owned: Owned) -> None:
    topic, partition, offset, key, value = origin
    for output in step.records:
        if not await runtime.publish(output.stage, output.key, output.record, output.timestamp_ms, partition,
                                     owned=owned):
            return
        if output.stage == "model-events":
            event = output.record
            level = logging.WARNING if event["kind"] == "REJECTED_UPDATE" else logging.INFO
            log.log(level, "%s: %s %s: %s", event["symbol"], event["kind"], event["model_id"], event["reason"])
    runtime.metrics.export(step.stats)
    if step.rejection is not None:
        stage, code, reason, error = step.rejection
        # A defect that fails every event would log a traceback each: the first ones, then one a minute.
        left_out = None if error is None else runtime.dead_letter_lines.admit(("traceback", stage, code))
        if left_out is not None:
            more = f" ({left_out:,} more such failures since the last traceback)" if left_out else ""
            log.error("%s failed on %s[%s]@%s%s", stage, topic, partition, offset, more, exc_info=error)
        await runtime.dead_letter(stage, code, reason, topic, partition, offset, key, value, owned=owned)


async def reject(runtime: Runtime, stage: str, code: str, reason: str, message: Any, owned: Owned = None) -> None:
    """An input rejected before it reached the pipeline (it did not decode)."""
    await runtime.dead_letter(stage, code, reason, message.topic, message.partition, message.offset, message.key,
                              message.value, owned=owned)
