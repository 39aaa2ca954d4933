"""Single-object encoding written and read with the official Apache ``avro`` package alone: the
independent implementation the codec is tested against."""

from __future__ import annotations

import functools
import io
import json

import avro.io
import avro.schema

from schemas.codec import SCHEMA_DIR


@functools.cache
def apache_schema(stem: str) -> avro.schema.Schema:
    return avro.schema.parse((SCHEMA_DIR / f"{stem}.avsc").read_text())


@functools.cache
def _fingerprint(schema: avro.schema.Schema) -> bytes:
    # The package computes it anew on every call (a third of the time a record took).
    return schema.fingerprint("CRC-64-AVRO")


def apache_encode(schema: avro.schema.Schema, record: dict) -> bytes:
    """Marker ``C3 01``, the package's own CRC-64-AVRO fingerprint, the binary body."""
    out = io.BytesIO()
    out.write(b"\xc3\x01")
    out.write(_fingerprint(schema))
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(out))
    return out.getvalue()


def apache_decode(schema: avro.schema.Schema, data: bytes) -> dict:
    assert data[:2] == b"\xc3\x01", "single-object marker"
    assert data[2:10] == _fingerprint(schema), "fingerprint differs from the avro package's"
    return avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))


def raw_schema(stem: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{stem}.avsc").read_text())
