"""The worker's Kafka input: Faust's aiokafka consumer, with the broker's hold on a fetch made short.

Why: aiokafka leaves a partition out of its next fetch while records fetched for it are still waiting
to be processed, and sends one fetch at a time to a broker. Faust builds that consumer with
``fetch_max_wait_ms=1500``, which lets the broker hold a fetch that long when none of the partitions
in it has anything new. A worker reads several topics (ticks, tick batches, external features,
feedback), most of them idle most of the time. Once a burst of ticks arrived faster than the
agent applied them (a backlog, a restart catching up, a producer that sent its first few hundred ticks
at once), the ticks partition still had records waiting when the next fetch left, so that fetch held
only the idle partitions and the broker kept it for 1.5 s, while new ticks piled up. The next fetch
brought those 1.5 s of ticks, which again outlasted the fetch turnaround, and so on: measured here
(2026-12-08, ``bench/pipeline.py`` (c), one symbol at 408 ticks/s, half of what the worker drains),
every prediction came 1.1-1.6 s after its tick (p50 1,331 ms) for as long as the stream ran (30 s
tried), with the worker's CPU half idle, while the broker had appended each tick within 2 ms. Without
the burst the same worker answered in about 10 ms.

With a short hold (``LIVELEARN_INPUT_FETCH_WAIT_MS``, default 10 ms) a fetch of idle partitions comes
back within that, so ticks waiting at the broker are fetched within about one hold of the agent
asking for them. An idle worker asks the broker about once per hold (100 fetches a second at 10 ms):
here about 6% of a core in the worker and 4-5% more in the broker than with Faust's hold
(``bench/input_fetch_wait.py``). Longer holds cost less idle and leave a worker that fell behind that
much behind: at 100 and 250 ms about 175 and 310 ms after the same backlog.
The same (c) with it: p50 7.3 ms, p99 33.6 ms at 329 ticks/s (docs/STATUS.md, #18).

The only change to Faust's consumer is that one number, an attribute aiokafka reads when the
consumer starts (``tests/unit/test_kafka_input.py`` checks it is set and read;
``tests/integration/test_worker_latency_kafka.py`` that a worker behind after a burst catches up).
"""

from __future__ import annotations

from typing import Any


def use_short_fetch_wait(app: Any, fetch_wait_ms: float) -> None:
    """Give ``app`` (a Faust app, before it starts) a consumer whose fetches the broker holds at most
    ``fetch_wait_ms`` (at least 1 ms) instead of Faust's 1,500."""
    from faust.transport.drivers import aiokafka as driver

    wait_ms = max(1, round(fetch_wait_ms))

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # Read by AIOKafkaConsumer.start() when it makes its fetcher (aiokafka 0.14).
            consumer._fetch_max_wait_ms = wait_ms
            return consumer

    class WorkerConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        Consumer = WorkerConsumer

    app.transport = Transport(app.conf.broker_consumer, app)
