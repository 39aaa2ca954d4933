"""Single-object encoding against an independent implementation: the official Apache ``avro`` package.

Writer and reader of livelearn's codec share every assumption, so a round trip through it alone cannot
see a mistake in the header (a big-endian fingerprint went unnoticed that way). Here every topic's
schema is written by one implementation and read by the other, in both directions.
"""

from __future__ import annotations

import json

import avro.schema
import pytest

from schemas.codec import SCHEMA_FILES, SINGLE_OBJECT_MAGIC, AvroCodec, legacy_fingerprint
from tests.avro_apache import apache_decode, apache_encode, raw_schema


def example(schema, names: dict, depth: int = 0):
    """A record that exercises every field of a schema (non-null union branches, non-empty maps)."""
    if isinstance(schema, str):
        simple = {"null": None, "boolean": True, "int": -7, "long": 1_700_000_000_123, "float": 0.25,
                  "double": -1.5e-3, "string": "BTCUSDT <x>", "bytes": b"\x00\xffab"}
        if schema in simple:
            return simple[schema]
        return example(names[schema], names, depth)
    if isinstance(schema, list):
        branch = next((b for b in schema if b != "null"), "null")
        return example(branch, names, depth)
    kind = schema["type"]
    if kind == "record":
        names[schema["name"]] = schema
        if "namespace" in schema:
            names[f"{schema['namespace']}.{schema['name']}"] = schema
        return {f["name"]: example(f["type"], names, depth + 1) for f in schema["fields"]}
    if kind == "enum":
        names[schema["name"]] = schema
        return schema["symbols"][-1]
    if kind == "array":
        return [example(schema["items"], names, depth + 1)] * 2
    if kind == "map":
        return {"a": example(schema["values"], names, depth + 1), "b": example(schema["values"], names, depth + 1)}
    if kind == "fixed":
        names[schema["name"]] = schema
        return b"\x01" * schema["size"]
    return example(kind, names, depth)


@pytest.mark.parametrize("stem", SCHEMA_FILES)
def test_livelearn_writes_what_the_avro_package_reads(stem):
    raw = raw_schema(stem)
    record = example(raw, {})
    data = AvroCodec.for_topic_schema(stem).encode(record)
    assert apache_decode(avro.schema.parse(json.dumps(raw)), data) == record


@pytest.mark.parametrize("stem", SCHEMA_FILES)
def test_livelearn_reads_what_the_avro_package_writes(stem):
    raw = raw_schema(stem)
    record = example(raw, {})
    data = apache_encode(avro.schema.parse(json.dumps(raw)), record)
    assert AvroCodec.for_topic_schema(stem).decode(data) == record
    # Same bytes from both writers: the encoding has one correct form.
    assert AvroCodec.for_topic_schema(stem).encode(record) == data


def test_deprecated_big_endian_records_are_still_read_and_reported():
    raw = raw_schema("feedback")
    record = example(raw, {})
    seen = []
    codec = AvroCodec.for_topic_schema("feedback", on_legacy=lambda: seen.append(1))
    current = codec.encode(record)
    legacy = SINGLE_OBJECT_MAGIC + legacy_fingerprint(raw) + current[10:]
    assert legacy != current
    assert codec.decode(legacy) == record
    assert codec.decode(current) == record
    assert seen == [1]
