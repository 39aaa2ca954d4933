"""The agent tier without a broker: Faust's test_context drives the real agents of a worker built by
the composition root; what they publish is recorded at the runtime's publish (the Kafka path itself is
covered by tests/integration)."""

from __future__ import annotations

import asyncio

from agents.settings import Settings
from agents.worker import build
from schemas.codec import AvroCodec
from streams.ticks import make_tick

T0 = 1_700_000_000_000


def worker(tmp_path):
    settings = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="agenttest.", state_dir=str(tmp_path),
                        members="logreg", horizon_ticks="2")
    runtime, checkpoints = build(settings)
    checkpoints.restored = {}  # nothing to restore: no broker is asked
    checkpoints.every_events = 10**9  # and no checkpoint is written
    published: list[tuple[str, bytes | None, dict]] = []

    async def publish(stage, key, record, timestamp_ms=None, partition=None):
        published.append((stage, key, record))

    runtime.publish = publish
    agents = {agent.name.rsplit(".", 1)[-1]: agent for agent in runtime.app.agents.values()}
    return runtime, agents, published


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


def test_external_feedback_reaches_the_learner_of_its_partition_and_unknown_ids_are_dead_lettered(tmp_path):
    runtime, agents, published = worker(tmp_path)
    tick_codec, feedback_codec = AvroCodec.for_topic_schema("tick"), AvroCodec.for_topic_schema("feedback")

    def feedback(prediction_id: str) -> bytes:
        return feedback_codec.encode({"prediction_id": prediction_id, "symbol": "BTCUSDT", "event_time_ms": None,
                                      "label": 1, "realised_return": None, "score": None, "source": "desk",
                                      "feedback_time_ms": T0, "matured_tick_index": None})

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
