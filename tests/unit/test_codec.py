"""Codec contract: exact bytes, schema evolution both ways, clear errors."""

from __future__ import annotations

import json

import pytest

from schemas.codec import (
    SCHEMA_DIR,
    SCHEMA_FILES,
    AvroCodec,
    DecodeError,
    EncodeError,
    SchemaStore,
    schema_fingerprint,
)
from streams.ticks import make_tick

TICK = make_tick("BTCUSDT", "KLINE", 1_577_836_800_000, 7195.24, 51.6, source="binance-dump", open=7195.24,
                 high=7196.25, low=7183.14, quote_volume=371_006.4, taker_buy_volume=22.4, trade_count=2420,
                 first_trade_id=None, last_trade_id=None)


def test_round_trip_is_byte_exact_for_every_schema_example():
    codec = AvroCodec.for_topic_schema("tick")
    data = codec.encode(TICK)
    assert codec.decode(data) == TICK
    assert codec.encode(codec.decode(data)) == data
    # Header: single-object magic, then the writer schema's CRC-64-AVRO fingerprint (little endian).
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schema_fingerprint(json.loads((SCHEMA_DIR / "tick.avsc").read_text()))


def test_encoding_is_stable_across_codec_instances():
    assert AvroCodec.for_topic_schema("tick").encode(TICK) == AvroCodec.for_topic_schema("tick").encode(dict(TICK))


def test_old_writer_read_by_new_reader():
    store = SchemaStore()
    v1 = json.loads((SCHEMA_DIR / "history" / "tick.v1.avsc").read_text())
    old_writer = AvroCodec(v1, store)
    new_reader = AvroCodec.for_topic_schema("tick", store)
    old_record = {k: v for k, v in TICK.items() if k != "receive_time_ms"}
    decoded = new_reader.decode(old_writer.encode(old_record))
    assert decoded["receive_time_ms"] is None
    assert {k: decoded[k] for k in old_record} == old_record


def test_new_writer_read_by_old_reader():
    store = SchemaStore()
    v1 = json.loads((SCHEMA_DIR / "history" / "tick.v1.avsc").read_text())
    old_reader = AvroCodec(v1, store)
    new_writer = AvroCodec.for_topic_schema("tick", store)
    decoded = old_reader.decode(new_writer.encode({**TICK, "receive_time_ms": 1_577_836_800_123}))
    assert "receive_time_ms" not in decoded
    assert decoded == {k: v for k, v in TICK.items() if k != "receive_time_ms"}


def test_garbage_gives_a_clear_error_naming_topic_and_offset():
    codec = AvroCodec.for_topic_schema("tick")
    with pytest.raises(DecodeError, match=r"not an Avro single-object record.*topic livelearn\.ticks, partition 3, offset 17"):
        codec.decode(b"hello world", "livelearn.ticks", 3, 17)
    good = codec.encode(TICK)
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint"):
        codec.decode(good[:2] + b"\x00" * 8 + good[10:], "t", 0, 1)
    with pytest.raises(DecodeError, match="corrupt Avro body"):
        codec.decode(good[:12], "t", 0, 2)
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.decode(good + b"\x00", "t", 0, 3)


def test_record_that_does_not_fit_is_rejected_on_encode():
    with pytest.raises(ValueError, match="tick"):
        AvroCodec.for_topic_schema("tick").encode({**TICK, "price": "not a number"})
    # An int past a long in a field that is no union: fastavro's C writer raises OverflowError, which
    # escaped `livelearn produce feedback` (feedback_time_ms 1e308 in a JSON line) and ended it.
    feedback = {"prediction_id": "p", "symbol": "BTCUSDT", "event_time_ms": None, "label": 1,
                "realised_return": None, "score": None, "source": "x", "matured_tick_index": None}
    with pytest.raises(EncodeError, match="feedback: record does not fit"):
        AvroCodec.for_topic_schema("feedback").encode({**feedback, "feedback_time_ms": 2**70})


@pytest.mark.parametrize("stem", SCHEMA_FILES)
def test_every_schema_is_namespaced_and_documented(stem):
    schema = json.loads((SCHEMA_DIR / f"{stem}.avsc").read_text())
    assert schema["namespace"] == "io.livelearn"
    assert schema.get("doc")
    for field in schema["fields"]:
        assert field.get("doc"), f"{stem}.{field['name']} has no doc"


FEATURES_V1_RECORD = {"symbol": "BTCUSDT", "event_time_ms": 1_577_836_800_000, "tick_kind": "kline_close",
                      "price": 7195.24, "tick_index": 3, "feature_set": "v1-abc", "values": {"ret_1": 0.001},
                      "not_ready": ["rsi_14"]}


def test_features_v2_label_is_invisible_to_v1_readers_and_defaults_for_v1_writers():
    store = SchemaStore()
    v1 = AvroCodec(json.loads((SCHEMA_DIR / "history" / "features.v1.avsc").read_text()), store)
    current = AvroCodec.for_topic_schema("features", store)
    assert current.decode(v1.encode(FEATURES_V1_RECORD)) == {**FEATURES_V1_RECORD, "label": None, "mid_price": None}
    assert v1.decode(current.encode({**FEATURES_V1_RECORD, "label": 1, "mid_price": 7195.2})) == FEATURES_V1_RECORD


def test_every_older_schema_in_history_is_read_by_the_current_reader():
    """Each history version writes a record (defaults filled by the example builder) that the current
    reader resolves, and the current writer's records are read back by each older reader."""
    from tests.unit.test_avro_spec import example

    store = SchemaStore()
    for path in sorted((SCHEMA_DIR / "history").glob("*.avsc")):
        stem = path.name.split(".")[0]
        old_schema = json.loads(path.read_text())
        old = AvroCodec(old_schema, store)
        current = AvroCodec.for_topic_schema(stem, store)
        record = example(old_schema, {})
        decoded = current.decode(old.encode(record))
        assert {k: decoded[k] for k in record} == record, path.name
        new_record = example(store.current[stem], {})
        if path.name in FORWARD_BREAKS:
            field_name, symbol, known = FORWARD_BREAKS[path.name]
            assert new_record[field_name] == symbol
            with pytest.raises(DecodeError, match=f"{symbol} not found in reader symbol list"):
                old.decode(current.encode(new_record))
            new_record = {**new_record, field_name: known}
        assert old.decode(current.encode(new_record)) == {k: new_record[k] for k in record}, path.name


# Enum symbols added later that a reader of the old version cannot resolve (it has no enum default):
# documented in the schema; the current enums carry a default, so later symbols will not break readers.
FORWARD_BREAKS = {"drift_alert.v1.avsc": ("kind", "BASIS", "FEATURE")}


# Every writer schema released, by stem: CRC-64-AVRO fingerprints (hex, as written in each record's
# header). Records of each may sit on a topic or in a backup, so each must stay readable.
RELEASED = {
    "tick": {"341326156dfe2339", "180d0716961dcc8c"},
    "tick_batch": {"00f208c6f27bca17"},
    "features": {"7d3c718fe8390058", "611f119d3c57365f", "f59b916d42f096eb"},
    "prediction": {"59a177cb74dd3f34", "671ce31956c50138"},
    "feedback": {"9c9d464eb6882f07", "e944637c255f2eb9"},
    "performance": {"620a8912ce837689", "0e96e73a0f59fbad", "2854cdf8007e9e64"},
    "drift_alert": {"f6c00b9cf5807615", "65dd3f7df24b7a06"},
    "model_event": {"e927b066e6643c51"},
    "dead_letter": {"184f6e41dc3dba8d"},
    "checkpoint": {"2fa8431b2f0257be", "8356452fe40284f1", "096ec9c262fb9388"},
}


def test_a_changed_schema_keeps_every_released_version_readable():
    """A ratchet on the contract: each current schema is a released one, and each released one is still
    known to the store (current or in ``schemas/history``). Changing a schema (``tick.avsc`` changes
    ``tick_batch.avsc`` with it) fails here until the old version is copied into history and the new
    fingerprint is added above, so records already written stay readable."""
    store = SchemaStore()
    for stem in SCHEMA_FILES:
        current = schema_fingerprint(store.current[stem]).hex()
        assert current in RELEASED.get(stem, set()), (
            f"schemas/{stem}.avsc changed (fingerprint {current}): copy its previous version to "
            f"schemas/history/{stem}.v<N>.avsc and add {current} to RELEASED[{stem!r}]")
    known = {fp.hex() for fp in store.by_fingerprint}
    for stem, released in RELEASED.items():
        missing = released - known
        assert not missing, f"released {stem} schema(s) {sorted(missing)} no longer readable: restore them in schemas/history"


def test_a_tick_batch_holds_exactly_the_tick_schema():
    """The batch schema embeds the Tick record: the two must evolve together (a changed tick.avsc
    without the same change here fails)."""
    tick = json.loads((SCHEMA_DIR / "tick.avsc").read_text())
    batch = json.loads((SCHEMA_DIR / "tick_batch.avsc").read_text())
    assert batch["fields"][0]["type"]["items"] == tick
    codec, batch_codec = AvroCodec.for_topic_schema("tick"), AvroCodec.for_topic_schema("tick_batch")
    assert batch_codec.decode(batch_codec.encode({"ticks": [TICK, TICK]})) == {"ticks": [codec.decode(codec.encode(TICK))] * 2}
