"""Who may write the checkpoints topic: only holders of the workers' checkpoint key.

A checkpoint record restores a stage's state and tells it which input offset to resume after, so a
record forged by anyone with write access to ``<prefix>checkpoints`` could make a worker skip input or
(were its state read with plain pickle) run code. Every record is therefore signed with
HMAC-SHA256 over all its fields and the topic it is written to; a reader verifies the signature
before anything else, then reads the state through an allowlist (:mod:`streams.snapshots`), and
checks the offset against the input partition's watermarks (:func:`offset_problem`).

The key comes from ``LIVELEARN_CHECKPOINT_KEY``, else from the file ``LIVELEARN_CHECKPOINT_KEY_FILE``
(default ``<LIVELEARN_HOME>/checkpoint.key``, created with 32 random bytes and mode 600 on first use,
which serves the workers of one machine). Workers on several machines must be given the same key.

>>> signer = CheckpointSigner(b"k" * 32, "livelearn.checkpoints")
>>> record = {"stage": "pipeline", "partition": 0, "offset": 41, "offsets": {"ticks": 41}, "version": "v",
...           "sequence": 3, "created_time_ms": 1, "state": b"\\x00"}
>>> signed = {**record, "signature": signer.sign(record)}
>>> signer.verify(signed)
>>> signer.verify({**signed, "offset": 10**9})
Traceback (most recent call last):
...
agents.trust.CheckpointRefused: forged_checkpoint: signature does not match the record (stage pipeline, partition 0, sequence 3)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
from pathlib import Path
from typing import Any

from agents.settings import Settings

SIGNED_FIELDS = ("stage", "partition", "offset", "offsets", "version", "sequence", "created_time_ms", "part", "parts",
                 "state")


class CheckpointRefused(ValueError):
    """A checkpoint record that must not be restored; ``code`` is the dead-letter reason code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


class CheckpointSigner:
    """HMAC-SHA256 of a checkpoint's fields, bound to the topic name (a record copied from another
    application's topic does not verify here)."""

    def __init__(self, key: bytes, topic: str):
        if len(key) < 16:
            raise ValueError("the checkpoint key must be at least 16 bytes")
        self._key = key
        self._topic = topic.encode()

    def _message(self, record: dict[str, Any]) -> bytes:
        parts = [self._topic]
        for name in SIGNED_FIELDS:
            value = record.get(name)
            if isinstance(value, dict):
                value = ",".join(f"{k}={value[k]}" for k in sorted(value))
            parts.append(value if isinstance(value, bytes) else str(value).encode())
        # Length-prefixed, so that no two different records give the same message.
        return b"".join(struct.pack(">Q", len(part)) + part for part in parts)

    def sign(self, record: dict[str, Any]) -> bytes:
        return hmac.new(self._key, self._message(record), hashlib.sha256).digest()

    def verify(self, record: dict[str, Any]) -> None:
        signature = record.get("signature")
        where = f"stage {record.get('stage')}, partition {record.get('partition')}, sequence {record.get('sequence')}"
        if not signature:
            raise CheckpointRefused("unsigned_checkpoint", f"record has no signature ({where})")
        if not hmac.compare_digest(signature, self.sign(record)):
            raise CheckpointRefused("forged_checkpoint", f"signature does not match the record ({where})")


def offset_problem(offset: int, low: int, high: int) -> str | None:
    """Why a restored offset cannot be right for an input partition holding offsets ``[low, high)``:
    resuming after an offset at or past the end would silently skip records that arrive later.

    >>> offset_problem(41, 0, 100) is None, offset_problem(-1, 0, 100) is None
    (True, True)
    >>> offset_problem(500, 0, 100)
    'offset 500 is at or past the end of the input partition (next offset 100)'
    """
    if offset >= high:
        return f"offset {offset} is at or past the end of the input partition (next offset {high})"
    if offset < -1:
        return f"offset {offset} is not an offset"
    return None


def checkpoint_key(settings: Settings) -> bytes:
    """The key from the environment, or from the key file (created on first use)."""
    if settings.checkpoint_key:
        return settings.checkpoint_key.encode()
    path: Path = settings.checkpoint_key_path
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under another name, then linked into place: a worker starting at the same
    # moment sees either no file or the whole key, and the first link wins.
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_hex(32).encode())
    try:
        os.link(partial, path)
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_bytes().strip()
    if not key:
        raise ValueError(f"checkpoint key file {path} is empty")
    return key
