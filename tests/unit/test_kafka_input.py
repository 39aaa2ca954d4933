"""The worker's consumer is Faust's, with the broker's hold on a fetch set from the settings
(agents.kafka_input): checked on the consumer Faust builds, and against the aiokafka code that reads it
(an upgrade that renamed the attribute would otherwise leave Faust's 1,500 ms in place silently)."""

from __future__ import annotations

import asyncio
import inspect

import aiokafka

from agents.app import faust_app
from agents.settings import Settings


def test_the_worker_consumer_asks_the_broker_to_hold_a_fetch_only_as_long_as_configured():
    settings = Settings.from_env({"LIVELEARN_INPUT_FETCH_WAIT_MS": "7"})

    async def built() -> int:
        app = faust_app(settings)
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        return consumer._fetch_max_wait_ms

    assert asyncio.run(built()) == 7
    assert Settings.from_env({}).worker.input_fetch_wait_ms == 10
    # What the attribute is for: the fetcher that start() makes takes its hold from it.
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)
