"""A Quix Streams application that forwards every record unchanged: the peer a user would pick.

Run by bench/forwarders.py from its own environment (Quix Streams is a benchmark-only dependency):
python bench/quix_noop.py IN_TOPIC GROUP_ID. Default settings, as a user would start; the state store
and changelog topics are off because a no-op keeps no state.
"""

from __future__ import annotations

import os
import sys
import tempfile

from quixstreams import Application


def main(topic: str, group: str) -> None:
    app = Application(broker_address=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                      consumer_group=group, auto_offset_reset="earliest", use_changelog_topics=False,
                      state_dir=tempfile.mkdtemp(prefix=f"{group}-"), loglevel="WARNING")
    source = app.topic(topic, key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(topic + ".out", key_serializer="bytes", value_serializer="bytes")
    app.dataframe(source).to_topic(sink)
    app.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
