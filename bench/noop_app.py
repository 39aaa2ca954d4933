"""A Faust app whose one agent does nothing with each event: the framework's own ceiling here.

Run as a worker by bench/pipeline.py with NOOP_TOPIC, NOOP_APP_ID and NOOP_WEB_PORT set.
"""

from __future__ import annotations

import json
import os
from typing import Any

import faust

settings: dict[str, Any] = dict(
    broker=f"kafka://{os.environ.get('KAFKA_BOOTSTRAP_SERVERS', '127.0.0.1:9092')}",
    key_serializer="raw", value_serializer="raw", store="memory://",
    datadir=os.path.join(os.environ.get("TMPDIR", "/tmp"), f"{os.environ['NOOP_APP_ID']}-data"),
    consumer_auto_offset_reset="earliest", web_port=int(os.environ["NOOP_WEB_PORT"]), web_bind="127.0.0.1",
    producer_linger_ms=1, broker_session_timeout=10.0, broker_heartbeat_interval=2.0,
)
# Faust settings to try (NOOP_FAUST_SETTINGS: a JSON object of App keyword arguments).
settings.update(json.loads(os.environ.get("NOOP_FAUST_SETTINGS", "{}")))
app = faust.App(os.environ["NOOP_APP_ID"], **settings)
topic = app.topic(os.environ["NOOP_TOPIC"], key_type=bytes, value_type=bytes)
out = app.topic(os.environ["NOOP_TOPIC"] + ".out", key_type=bytes, value_type=bytes)


# NOOP_OUTPUT=librdkafka: forward through a confluent-kafka producer (linger 0, polled after each
# record), as the worker publishes its outputs, instead of Faust's own producer; the difference between
# the two no-ops is Faust's output path.
if os.environ.get("NOOP_OUTPUT") == "librdkafka":
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                         "linger.ms": 0})

    @app.agent(topic)
    async def noop(stream):
        async for event in stream.events():
            producer.produce(out.get_topic_name(), key=event.key, value=event.value)
            producer.poll(0)
else:
    @app.agent(topic)
    async def noop(stream):
        async for event in stream.events():
            await out.send(key=event.key, value=event.value)


if __name__ == "__main__":
    import sys

    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()
