"""monitor: features -> feature-drift and variance-change alerts (KS and F-tests per model feature)."""

from __future__ import annotations

import logging

from agents.app import app, avro, dead_letter, metrics, publish, topics
from agents.predict import registry
from schemas.codec import DecodeError
from streams.features import FEATURE_SET

log = logging.getLogger("livelearn.monitor")
STAGE = "monitor"


@app.agent(topics["features"])
async def monitor(stream):
    codec = avro["features"]
    events = metrics.events.labels(STAGE)
    async for event in stream.events():
        message = event.message
        try:
            vector = codec.decode(message.value, message.topic, message.partition, message.offset)
            drift = registry.feature_monitor(vector["symbol"])
            # A labelled dataset replayed through the pipeline is tested on its own features.
            names = registry.drift_features if vector["feature_set"] == FEATURE_SET else None
            alerts = drift.update_features(vector["values"], vector["event_time_ms"], names)
        except DecodeError as exc:
            await dead_letter(message, STAGE, "decode_error", str(exc))
            continue
        except Exception as exc:
            log.exception("monitor failed on %s[%s]@%s", message.topic, message.partition, message.offset)
            await dead_letter(message, STAGE, "internal_error", f"{type(exc).__name__}: {exc}")
            continue
        events.inc()
        for alert in alerts:
            metrics.alerts.labels(alert["kind"], alert["severity"]).inc()
            await publish("alerts", message.key, alert, alert["created_time_ms"])
        for channel in drift.channels.values():
            if channel.since_check == 0 and channel.last_results:
                for stream_name, _, statistic, p, *_ in channel.last_results:
                    metrics.drift_p_value.labels(vector["symbol"], channel.kind, stream_name).set(p)
                    metrics.drift_statistic.labels(vector["symbol"], channel.kind, stream_name).set(statistic)
