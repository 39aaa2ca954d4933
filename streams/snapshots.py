"""Snapshots of pure state (checkpoints, the guard's last good member): pickle written, read back
through an allowlist.

Why not plain ``pickle.loads``: a pickle is a program, and reading one runs whatever callables it
names, ``os.system`` included. Checkpoints travel through a Kafka topic, so their bytes are
authenticated first (HMAC, see ``agents.trust``); this reader is the second wall, for a leaked key
or a bug in that check. It resolves only

* classes (not functions, not modules) defined in the project's pure core (``streams``), in River,
  and a few containers of the standard library and numpy, looked up by their own module and a plain
  name (a dotted name such as ``guard.pickle.loads`` would reach any attribute of an allowed
  module), and
* an explicit list of data constructors (numpy's array and dtype rebuilders).

Members keep their state as data where they can: the torch MLP pickles its weights and optimizer
state as numpy arrays, not torch objects (``torch.storage._load_from_bytes`` unpickles without
restrictions, so no torch callable is on the list).

>>> from collections import deque
>>> loads(dumps({"a": deque([1.5, 2.5], maxlen=3)}))
{'a': deque([1.5, 2.5], maxlen=3)}
>>> import os
>>> loads(dumps(os.system))
Traceback (most recent call last):
...
streams.snapshots.ForbiddenGlobal: snapshot refers to posix.system, which a snapshot may not load
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import Any

# Classes from these packages may be rebuilt (constructors of plain state objects).
CLASS_PREFIXES = ("streams.", "river.")
CLASSES = frozenset({
    ("builtins", name) for name in
    ("dict", "list", "set", "frozenset", "tuple", "float", "int", "complex", "bytes", "bytearray", "str", "bool",
     "slice", "range")
} | {
    ("collections", "deque"), ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("collections", "Counter"), ("functools", "partial"), ("random", "Random"), ("numpy", "dtype"),
    ("numpy", "ndarray"), ("schemas.keys", "BasisGroups"),
})
FUNCTIONS = frozenset({
    ("numpy._core.numeric", "_frombuffer"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("copyreg", "_reconstructor"),
})


class ForbiddenGlobal(pickle.UnpicklingError):
    """A snapshot names something outside the allowlist; nothing it names was called."""


class _Reader(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if "." not in name:
            if (module, name) in FUNCTIONS:
                return super().find_class(module, name)
            if (module, name) in CLASSES or module.startswith(CLASS_PREFIXES):
                try:
                    found = getattr(importlib.import_module(module), name)
                except (ImportError, AttributeError):
                    found = None
                if isinstance(found, type) and (found.__module__ == module or (module, name) in CLASSES):
                    return found
        raise ForbiddenGlobal(f"snapshot refers to {module}.{name}, which a snapshot may not load")


def dumps(state: Any) -> bytes:
    return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    """Rebuild a snapshot; raises :class:`ForbiddenGlobal` for anything outside the allowlist."""
    return _Reader(io.BytesIO(data)).load()
