"""Labelled datasets as feature vectors: River's bundled datasets, a CSV or an ARFF file, straight onto the external-features topic.

This is how the pipeline is checked against River's reference evaluation: each row becomes a Features
record carrying its label; the predict agent predicts on it and learns it ``horizon_ticks`` rows later,
which is ``river.evaluate.progressive_val_score(dataset, model, metric, delay=horizon_ticks)``.

Row ``i`` (0-based) gets ``tick_index = i + 1`` and ``event_time_ms = start_ms + i * step_ms``; every
feature is a double; the label must be binary. Positive class: ``True``, ``1``, or a value named with
``positive``. A row without a label or with a non-numeric feature is rejected with its reason.

>>> rows = list(labelled_vectors("phishing", limit=2))
>>> rows[0][0]["tick_index"], rows[0][0]["label"], sorted(rows[0][0]["values"])[:2]
(1, 1, ['age_of_domain', 'anchor_from_other_domain'])
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RIVER_DATASETS = ("phishing", "bananas")
START_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z: any fixed origin; replays must be byte-identical


class RowError(ValueError):
    """A dataset row that cannot become a labelled feature vector."""


def _label(value: Any, positive: str | None) -> int:
    if isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    if positive is not None:
        return int(text == positive)
    lowered = text.lower()
    if lowered in ("1", "true", "up", "yes"):
        return 1
    if lowered in ("0", "false", "down", "no"):
        return 0
    raise RowError(f"label {text!r} is not binary; name the positive class (--positive)")


def check_source(source: str) -> Path:
    """The CSV file a dataset argument names (a River dataset's name is its own source)."""
    path = Path(source)
    if source.lower() not in RIVER_DATASETS and not path.is_file():
        what = "a folder, not a CSV file" if path.is_dir() else "no such file"
        raise FileNotFoundError(f"no dataset {source!r} ({what}): give a CSV or ARFF path or one of {', '.join(RIVER_DATASETS)}")
    return path


def _rows(source: str, target: str | None) -> Iterator[tuple[dict[str, Any], Any, bytes]]:
    if source.lower() in RIVER_DATASETS:
        from river import datasets

        dataset = datasets.Phishing() if source.lower() == "phishing" else datasets.Bananas()
        for x, y in dataset:
            yield x, y, repr((x, y)).encode()
        return
    path = check_source(source)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        names = _arff_header(handle)
        reader = csv.DictReader(handle, fieldnames=names, skipinitialspace=names is not None)
        if not reader.fieldnames:
            raise RowError(f"{path} has no header row")
        label_column = target or reader.fieldnames[-1]
        if label_column not in reader.fieldnames:
            raise RowError(f"{path} has no column {label_column!r}; columns: {', '.join(reader.fieldnames)}")
        for row in reader:
            y = row.pop(label_column)
            yield row, y, ",".join(f"{k}={v}" for k, v in row.items()).encode()


def _arff_header(handle) -> list[str] | None:
    """The attribute names of an ARFF file (MOA's and CapyMOA's stream datasets come as ARFF), with the
    handle left at its first data row; None, with the handle rewound, for a CSV file. Nominal values
    are read as they are written (``{UP,DOWN}`` labels as the CSV's are; a nominal feature that is no
    number rejects its rows as a CSV's text column does).

    >>> import io
    >>> text = io.StringIO("% Elec2\\n@RELATION elec\\n@ATTRIBUTE 'nsw price' NUMERIC\\n"
    ...                    "@attribute class {UP,DOWN}\\n\\n@DATA\\n0.05, UP\\n")
    >>> _arff_header(text), text.readline()
    (['nsw price', 'class'], '0.05, UP\\n')
    """
    first = ""
    for first in handle:
        if first.strip() and not first.lstrip().startswith("%"):
            break
    if not first.lstrip().lower().startswith("@relation"):
        handle.seek(0)
        return None
    names: list[str] = []
    for line in handle:
        text = line.strip()
        if text.lower().startswith("@attribute"):
            rest = text[len("@attribute"):].strip()
            quote = rest[:1] if rest[:1] in "'\"" else ""
            if quote and quote not in rest[1:] or not rest:
                raise RowError(f"{getattr(handle, 'name', 'the file')}: ARFF attribute line {text!r} names nothing")
            names.append(rest[1:rest.index(quote, 1)] if quote else rest.split()[0])
        elif text.lower().startswith("@data"):
            break
    if not names:
        raise RowError(f"{getattr(handle, 'name', 'the file')}: an ARFF header without @attribute lines")
    return names


def _numeric_columns(x: dict[str, Any], dropped: set[str], number: int) -> None:
    """Until a row is sent, a feature that is no number is the dataset's (a text column, as Airlines'
    carrier codes), not one row's: every row would be refused, a dead letter and a line each.

    >>> _numeric_columns({"a": "1.5", "carrier": "CO"}, set(), 1)
    Traceback (most recent call last):
    ...
    connectors.datasets.RowError: row 1: column carrier is not a number ('CO'): leave it out with --drop carrier; no vector was sent
    """
    text = {name: value for name, value in x.items() if name not in dropped and not _is_number(value)}
    if text and all(value not in ("", "?") for value in text.values()):
        names = ",".join(text)
        shown = ", ".join(f"{name} is not a number ({value!r})" for name, value in text.items())
        raise RowError(f"row {number}: column {shown}: leave it out with --drop {names}; no vector was sent")


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def dataset_name(source: str) -> str:
    return source.lower() if source.lower() in RIVER_DATASETS else Path(source).stem


def labelled_vectors(source: str, target: str | None = None, symbol: str | None = None,
                     positive: str | None = None, limit: int | None = None, start_ms: int = START_MS,
                     step_ms: int = 1000, drop: tuple[str, ...] = ()
                     ) -> Iterator[tuple[dict[str, Any] | None, str | None, bytes]]:
    """Yield ``(features record, None, raw)`` per usable row and ``(None, reason, raw)`` per rejected row.
    Columns in ``drop`` are left out of the vectors (so out of the models and the drift tests); a name
    that is not a column is an error."""
    symbol = symbol or dataset_name(source).upper()
    feature_set = None
    index = 0
    dropped = set(drop)
    # Rows are numbered from 1 (the first row after a CSV's header), as a reader counts them.
    for number, (x, y, raw) in enumerate(_rows(source, target), 1):
        if limit is not None and number > limit:
            return
        if number == 1 and dropped - set(x):
            raise RowError(f"--drop: no column {', '.join(sorted(dropped - set(x)))} in {source} "
                           f"(columns: {', '.join(x)})")
        if index == 0:
            _numeric_columns(x, dropped, number)
        try:
            values = {name: float(value) for name, value in x.items() if name not in dropped}
            bad = [name for name, value in values.items() if not math.isfinite(value)]
            if bad:
                raise RowError(f"row {number}: non-finite {', '.join(bad)}")
            if y is None or y in ("", "?"):  # ARFF writes a missing value as ?
                raise RowError(f"row {number}: no label")
        except (TypeError, ValueError) as exc:
            yield None, f"row {number}: {exc}" if not str(exc).startswith("row ") else str(exc), raw
            continue
        try:
            label = _label(y, positive)
        except RowError as exc:
            if index == 0:
                # A multi-class dataset's every row would be refused, a dead letter and a line each: the
                # first label read is the dataset's mistake, not one row's.
                raise RowError(f"row {number}: {exc}; no vector was sent") from None
            yield None, f"row {number}: {exc}", raw
            continue
        if feature_set is None:
            names = ",".join(values)
            feature_set = f"dataset-{dataset_name(source)}-" + hashlib.sha256(names.encode()).hexdigest()[:8]
        yield {
            "symbol": symbol, "event_time_ms": start_ms + index * step_ms, "tick_kind": "labelled_row",
            "price": 1.0, "tick_index": index + 1, "feature_set": feature_set, "values": values, "not_ready": [],
            "label": label,
        }, None, raw
        index += 1
