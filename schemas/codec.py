"""Avro codecs for every topic, built on fastavro.

Two wire formats:

* registry-free (default): Avro *single-object encoding* exactly as the specification defines it —
  ``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical
  Form, then the binary body — so Java's ``BinaryMessageDecoder``, the official Python ``avro``
  package and any other conformant reader or writer interoperate (a test checks every topic's schema
  against the ``avro`` package in both directions). Every schema version shipped in ``schemas/`` and
  ``schemas/history/`` is known by fingerprint, so a reader resolves old and new writers against its
  own (reader) schema with Avro's resolution rules.

  Deprecated: livelearn 0.1 wrote the fingerprint in big-endian order (off the specification).
  Those records are still read; each one is reported through the codec's ``on_legacy`` callback
  (the worker counts them on ``livelearn_legacy_avro_records_total``). Nothing writes them any more.
* Confluent Schema Registry (when ``SCHEMA_REGISTRY_URL`` is set): magic byte 0, 4-byte schema id,
  body; implemented with confluent-kafka's schema-registry client.

Decoding failures raise :class:`DecodeError`, which names the topic and offset when the caller
passes them, so dead letters and logs say exactly which record was bad.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).resolve().parent
SINGLE_OBJECT_MAGIC = b"\xc3\x01"

# Schema file stem -> record name; the file stem is what topics refer to.
SCHEMA_FILES = ("tick", "tick_batch", "features", "prediction", "feedback", "performance", "drift_alert",
                "model_event", "dead_letter", "checkpoint")


class SchemaError(Exception):
    """A schema file is missing or invalid."""


class DecodeError(ValueError):
    """Bytes that are not a valid record of the expected schema."""

    def __init__(self, message: str, topic: str | None = None, partition: int | None = None,
                 offset: int | None = None):
        where = ""
        if topic is not None:
            where = f" (topic {topic}"
            if partition is not None:
                where += f", partition {partition}"
            if offset is not None:
                where += f", offset {offset}"
            where += ")"
        super().__init__(message + where)
        self.topic, self.partition, self.offset = topic, partition, offset


class EncodeError(ValueError):
    """A record that does not fit its schema."""


def load_schema_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SchemaError(f"cannot read schema {path}: {exc}") from exc


def schema_fingerprint(schema: dict) -> bytes:
    """CRC-64-AVRO fingerprint of the Parsing Canonical Form, as the 8 little-endian bytes the
    single-object encoding carries (fastavro's hex digest is already in that order, as Java's is;
    the value below is the one the Apache ``avro`` package computes).

    >>> schema_fingerprint({"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}).hex()
    '9a89b5f44e448d92'
    """
    canonical = to_parsing_canonical_form(fastavro.parse_schema(schema, _write_hint=False))
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def legacy_fingerprint(schema: dict) -> bytes:
    """The big-endian fingerprint livelearn 0.1 wrote (deprecated; read, never written)."""
    return schema_fingerprint(schema)[::-1]


class SchemaStore:
    """All writer schemas this build knows: current files plus ``history/*.avsc``."""

    def __init__(self, directory: Path = SCHEMA_DIR):
        self.directory = directory
        self.current: dict[str, dict] = {}
        self.by_fingerprint: dict[bytes, Any] = {}
        self.by_legacy_fingerprint: dict[bytes, Any] = {}
        for stem in SCHEMA_FILES:
            raw = load_schema_json(directory / f"{stem}.avsc")
            self.current[stem] = raw
            self.register(raw)
        for path in sorted((directory / "history").glob("*.avsc")):
            self.register(load_schema_json(path))

    def register(self, schema: dict) -> bytes:
        fp = schema_fingerprint(schema)
        parsed = fastavro.parse_schema(schema)
        self.by_fingerprint[fp] = parsed
        self.by_legacy_fingerprint[fp[::-1]] = parsed
        return fp


@lru_cache(maxsize=1)
def default_store() -> SchemaStore:
    return SchemaStore()


class AvroCodec:
    """Single-object Avro codec for one schema.

    >>> codec = AvroCodec.for_topic_schema("feedback")
    >>> record = {"prediction_id": "BTCUSDT-1-1", "symbol": "BTCUSDT", "event_time_ms": None,
    ...           "label": 1, "realised_return": 0.001, "score": None, "source": "market",
    ...           "feedback_time_ms": 2, "matured_tick_index": 2}
    >>> data = codec.encode(record)
    >>> data[:2] == SINGLE_OBJECT_MAGIC
    True
    >>> codec.decode(data) == record
    True
    """

    def __init__(self, schema: dict, store: SchemaStore | None = None, name: str | None = None,
                 on_legacy: Callable[[], None] | None = None):
        self.store = store or default_store()
        self.name = name or schema.get("name", "record")
        self.schema = fastavro.parse_schema(schema)
        self.fingerprint = self.store.register(schema)
        self.header = SINGLE_OBJECT_MAGIC + self.fingerprint
        self.on_legacy = on_legacy

    @classmethod
    def for_topic_schema(cls, stem: str, store: SchemaStore | None = None,
                         on_legacy: Callable[[], None] | None = None) -> AvroCodec:
        store = store or default_store()
        return cls(store.current[stem], store, name=stem, on_legacy=on_legacy)

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self.header)
        try:
            fastavro.schemaless_writer(buf, self.schema, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            # OverflowError: an int past a long where the field is no union (fastavro's C writer)
            raise EncodeError(f"{self.name}: record does not fit the schema: {exc}") from exc
        return buf.getvalue()

    def decode(self, data: bytes | None, topic: str | None = None, partition: int | None = None,
               offset: int | None = None) -> dict[str, Any]:
        if not data or len(data) < 10 or data[:2] != SINGLE_OBJECT_MAGIC:
            raise DecodeError(
                f"{self.name}: not an Avro single-object record "
                f"(got {len(data or b'')} bytes starting {bytes(data or b'')[:4]!r})",
                topic, partition, offset,
            )
        fp = bytes(data[2:10])
        # Our own schema's records (nearly all) read with the parsed schema itself: fastavro then skips
        # comparing and resolving two equal schemas (a tick record 21 -> 17 us here).
        writer = self.schema if fp == self.fingerprint else self.store.by_fingerprint.get(fp)
        if writer is None:
            writer = self.store.by_legacy_fingerprint.get(fp)
            if writer is None:
                raise DecodeError(
                    f"{self.name}: unknown writer schema fingerprint {fp.hex()} (little-endian CRC-64-AVRO of "
                    "the writer schema's canonical form; register the schema or upgrade this reader)",
                    topic, partition, offset)
            if self.on_legacy is not None:
                self.on_legacy()
        buf = io.BytesIO(data)
        buf.seek(10)
        try:
            record = fastavro.schemaless_reader(buf, writer, self.schema)
        except Exception as exc:
            raise DecodeError(f"{self.name}: corrupt Avro body: {type(exc).__name__}: {exc}", topic, partition,
                              offset) from exc
        if buf.tell() != len(data):
            raise DecodeError(f"{self.name}: {len(data) - buf.tell()} trailing bytes after the record", topic,
                              partition, offset)
        return record  # type: ignore[return-value]  # a record schema decodes to a dict


class ConfluentAvroCodec:
    """Confluent wire format (magic byte 0, 4-byte big-endian schema id, body) through a Schema Registry.

    Used when ``SCHEMA_REGISTRY_URL`` is set (``mock://<name>`` is confluent-kafka's in-memory
    registry, for tests). The subject is ``<topic>-value`` (TopicNameStrategy). The codec registers
    its schema when it is built, as ``auto.register.schemas`` would on the first write, so that a
    reader-only process knows the id of its own schema and an unreachable registry fails at start
    with one clear line rather than on the first record. The two encodings cannot share topics: a
    single-object reader rejects Confluent records and the other way round.
    """

    def __init__(self, schema: dict, registry_url: str, topic: str, name: str | None = None):
        from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        self.name = name or schema.get("name", "record")
        client = SchemaRegistryClient.new_client({"url": registry_url})
        text = json.dumps(schema)
        try:
            self.schema_id = client.register_schema(f"{topic}-value", Schema(text, "AVRO"))
        except Exception as exc:
            raise SchemaError(f"{self.name}: the schema registry at {registry_url} refused or did not answer "
                              f"the registration of {topic}-value: {type(exc).__name__}: {exc}") from exc
        self._serializer = AvroSerializer(client, text, conf={"auto.register.schemas": True})
        self._deserializer = AvroDeserializer(client, text)
        self._context = SerializationContext(topic, MessageField.VALUE)

    def encode(self, record: dict[str, Any]) -> bytes:
        try:
            return self._serializer(record, self._context)
        except Exception as exc:
            raise EncodeError(f"{self.name}: {exc}") from exc

    def decode(self, data: bytes | None, topic: str | None = None, partition: int | None = None,
               offset: int | None = None) -> dict[str, Any]:
        if not data or len(data) < 5 or data[0] != 0:
            raise DecodeError(f"{self.name}: not a Confluent Avro record (magic byte 0 + schema id)", topic,
                              partition, offset)
        try:
            return self._deserializer(data, self._context)
        except Exception as exc:
            raise DecodeError(f"{self.name}: {exc}", topic, partition, offset) from exc


def make_codec(stem: str, registry_url: str = "", topic: str = "",
               on_legacy: Callable[[], None] | None = None) -> AvroCodec | ConfluentAvroCodec:
    """The codec for a topic's schema under the configured wire format; ``on_legacy`` is called for
    each record read with the deprecated big-endian fingerprint (single-object encoding only)."""
    if registry_url:
        return ConfluentAvroCodec(default_store().current[stem], registry_url, topic, name=stem)
    return AvroCodec.for_topic_schema(stem, on_legacy=on_legacy)
