"""`livelearn evaluate`: the skill table of a run, read from its topics (or of files, run in process).

The scoring is :mod:`streams.evaluation`; this module reads records and prints them.
"""

from __future__ import annotations

import heapq
import json
import math
import sys
from collections import Counter
from typing import Any

from connectors.status_line import StatusLine

REFERENCE_ORDER = ("constant", "prior", "queue_imbalance", "trade_side", "persistence")


def _cell(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _skill(row: dict[str, Any], reference: str) -> str:
    s = row.get(f"skill_vs_{reference}")
    if s is None or math.isnan(s):
        return "-"
    low, high = row.get(f"skill_vs_{reference}_low"), row.get(f"skill_vs_{reference}_high")
    if low is None or math.isnan(low):
        return f"{s:+.3f}"
    return f"{s:+.3f} [{low:+.3f}, {high:+.3f}]"


def ordered(names) -> list[str]:
    """Ensemble first, then members, then the references (the no-skill ones first)."""
    names = list(names)
    references = [n for n in REFERENCE_ORDER if n in names]
    members = sorted(n for n in names if n != "ensemble" and n not in REFERENCE_ORDER)
    return (["ensemble"] if "ensemble" in names else []) + members + references


def render(summary: dict[str, Any], title: str = "") -> str:
    """The table as text: per symbol and pooled."""
    lines = [title] if title else []
    counts = summary["_counts"]
    for symbol, rows in summary.items():
        if symbol.startswith("_"):  # the counts, the drift alerts
            continue
        c = counts.get(symbol, {})
        flat = c.get("flat_share")
        lines.append(f"{symbol}: {c.get('outcomes', 0)} outcomes, {c.get('flat', 0)} flat "
                     f"({'-' if flat is None else f'{flat:.1%}'}); skill = 1 - L / L_reference, 95% interval")
        lines.append(f"  {'forecaster':<16} {'n':>7} {'accuracy':>8} {'log-loss':>8} {'brier':>7} {'ECE':>6}  "
                     f"{'skill vs prior':<26} skill vs constant 0.5")
        for name in ordered(rows):
            row = rows[name]
            lines.append(f"  {name:<16} {row['n']:>7} {_cell(row['accuracy']):>8} {_cell(row['log_loss']):>8} "
                         f"{_cell(row['brier']):>7} {_cell(row['calibration_error'], 3):>6}  "
                         f"{_skill(row, 'prior'):<26} {_skill(row, 'constant')}")
        if c.get("at_one_half"):
            lines.append(f"  ({', '.join(c['at_one_half'])}: 0.5 at every outcome, no input of theirs in these "
                         "ticks; the constant's row)")
    return "\n".join(lines)


REFERENCES = (("constant", "the constant 0.5"), ("prior", "the running prior"))


def verdict(summary: dict[str, Any]) -> list[str]:
    """Plain sentences: where the ensemble has skill against the no-skill references and where not.

    Skill is claimed only when the interval of the skill against *both* references lies above 0: the
    running prior is often worse than a constant 0.5 on a short series, and beating the weaker one
    says nothing.

    >>> row = {"log_loss": 0.6926, "skill_vs_prior": 0.006, "skill_vs_prior_low": 0.003,
    ...        "skill_vs_prior_high": 0.009, "skill_vs_constant": 0.001, "skill_vs_constant_low": -0.002,
    ...        "skill_vs_constant_high": 0.004}
    >>> summary = {"BTCUSDT": {"ensemble": row, "constant": {"log_loss": 0.6931}, "prior": {"log_loss": 0.6969}}}
    >>> print(verdict(summary)[0])
    BTCUSDT: no skill shown; the ensemble stays at the no-skill level (log-loss 0.6926 vs 0.6931); it is above the running prior (+0.006 [+0.003, +0.009]) only: that reference is weaker than the constant 0.5 here.
    >>> row.update(skill_vs_constant=0.005, skill_vs_constant_low=0.001, skill_vs_constant_high=0.009)
    >>> print(verdict(summary)[0])
    BTCUSDT: skill against both no-skill references (the constant 0.5 +0.005 [+0.001, +0.009]; the running prior +0.006 [+0.003, +0.009]).
    >>> gated = {"log_loss": 0.6931, "brier": 0.25, "n": 1435}
    >>> print(verdict({"BTCUSDT": {"ensemble": gated, "constant": {"log_loss": 0.6931}}})[0])
    BTCUSDT: no skill shown; every forecast was the constant 0.5 (the skill gate stayed closed: log-loss 0.6931 vs 0.6931).
    """
    out = []
    for symbol, rows in summary.items():
        if symbol.startswith("_") or "ensemble" not in rows:
            continue
        row = rows["ensemble"]
        shown = [(name, label) for name, label in REFERENCES if name in rows and f"skill_vs_{name}" in row]
        above = [(name, label) for name, label in shown if _above_zero(row.get(f"skill_vs_{name}_low"))]
        if shown and len(above) == len(shown):
            out.append(f"{symbol}: skill against both no-skill references ("
                       + "; ".join(f"{label} {_interval(row, name)}" for name, label in shown) + ").")
            continue
        best = min(rows[name]["log_loss"] for name, _ in REFERENCES if name in rows)
        if row.get("brier") == 0.25 and row.get("n"):  # every forecast exactly 0.5
            sentence = (f"{symbol}: no skill shown; every forecast was the constant 0.5 (the skill gate stayed "
                        f"closed: log-loss {row['log_loss']:.4f} vs {best:.4f})")
        elif row["log_loss"] <= best + 0.002:
            sentence = (f"{symbol}: no skill shown; the ensemble stays at the no-skill level "
                        f"(log-loss {row['log_loss']:.4f} vs {best:.4f})")
        else:
            sentence = f"{symbol}: no skill, and worse than no skill by {row['log_loss'] - best:.4f} nats"
        for name, label in above:
            sentence += (f"; it is above {label} ({_interval(row, name)}) only: that reference is weaker than "
                         + " and ".join(other for n, other in shown if n != name) + " here")
        out.append(sentence + ".")
    return out


def _above_zero(low: Any) -> bool:
    return low is not None and not math.isnan(low) and low > 0


def _interval(row: dict[str, Any], name: str) -> str:
    return (f"{row[f'skill_vs_{name}']:+.3f} [{row[f'skill_vs_{name}_low']:+.3f}, "
            f"{row[f'skill_vs_{name}_high']:+.3f}]")


def finite(value: Any) -> Any:
    """NaN (an undefined interval) as null, so that the JSON is valid for any reader."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def evaluate_topics(settings):
    """The run's skill table and its drift alert budget (:func:`alert_budget`), read from its topics: the
    vectors are its predictions, the alerts the FIRING records of its alerts topic."""
    from functools import partial

    from cli.topic_reader import read_records
    from streams.evaluation import evaluate_run, read_for_scoring

    predictions = read_records(settings, "predictions", "prediction", keep=partial(read_for_scoring, "predictions"))
    outcomes = read_records(settings, "outcomes", "feedback", keep=partial(read_for_scoring, "outcomes"))
    vectors = read_records(settings, "features", "features", keep=partial(read_for_scoring, "features"))
    alerts = read_records(settings, "alerts", "drift_alert", keep=lambda r: {k: r[k] for k in ("symbol", "kind", "status")})
    return evaluate_run(predictions, outcomes, vectors).summary(), alert_budget(settings, predictions, alerts)


class NoTicks(ValueError):
    """A file with no readable tick: an empty table would look like a result."""


class OverlappingFiles(ValueError):
    """Two files of a joined run hold one symbol over the same time (one day given twice), or of two
    markets (a spot and a futures dump of one name): merged, their ticks would make one series."""


class _SeriesSources:
    """Which file each symbol's ticks of each kind come from in a merged run. A pair's files may follow
    each other (consecutive days: the source changes once per file, give or take the few seconds two
    captures may overlap at their ends); coming back to a file left more than ``overlap_ms`` earlier
    means two files interleave, and following a file of another market folder
    (:func:`connectors.recorded.market_folder`)
    means two pairs of one name. Ticks of other kinds (a trades dump and a book-ticker dump of one
    pair) are apart: a worker reads them interleaved too."""

    def __init__(self, paths, overlap_ms: int = 10_000):
        from connectors.recorded import market_folder

        self._paths = [str(p) for p in paths]
        self._markets = [market_folder(p) for p in self._paths]
        self._overlap_ms = overlap_ms
        self._current: dict[tuple[str, str], int] = {}
        self._left: dict[tuple[str, str], dict[int, int]] = {}  # file -> event time it was first left

    def check(self, tick: dict[str, Any], file_index: int) -> None:
        key = (tick["symbol"], tick["kind"])
        current = self._current.get(key)
        if current == file_index:
            return
        time_ms = tick["event_time_ms"]
        left = self._left.setdefault(key, {})
        if current is not None and time_ms - left.get(file_index, time_ms) > self._overlap_ms:
            raise OverlappingFiles(
                f"{self._paths[file_index]} and {self._paths[current]} both hold {key[0]} {key[1].lower()} "
                f"ticks over the same time (at event time {time_ms}): joined, they would be one series "
                "switching between the two. Join a pair's consecutive files only (of a day given both in a "
                "daily and in a monthly dump, one)")
        if current is not None:
            markets = self._markets[current], self._markets[file_index]
            if None not in markets and markets[0] != markets[1]:
                raise OverlappingFiles(
                    f"{self._paths[current]} and {self._paths[file_index]} hold {key[0]} of two markets "
                    f"({markets[0]}, {markets[1]}): joined, they would be one series. Evaluate a spot and a "
                    "futures dump of one name apart")
            left.setdefault(current, time_ms)
        self._current[key] = file_index


def evaluate_file(path, settings, fmt: str = "auto", symbol: str | None = None, progress=None) -> dict[str, Any]:
    """The skill table of a file run through the worker's own partition pipeline in this process (the
    settings' pipeline configuration; no broker)."""
    return run_file(path, settings, fmt, symbol, progress).summary()


ALL_FILES = "all files"
JOINED = "joined"
# A table's drift alerts against their bounds, per symbol and channel (streams.drift.budget).
DRIFT_ALERTS = "_drift_alerts"


def pooled_over_files(evaluations: list) -> dict[str, Any]:
    """One table for several files run each on its own: every symbol of every file pooled, each file's
    series kept apart for the intervals (:meth:`streams.evaluation.Evaluation.combine`)."""
    from streams.evaluation import POOLED, Evaluation

    summary = Evaluation.combine(evaluations).summary()
    return {ALL_FILES: summary[POOLED], "_counts": {ALL_FILES: summary["_counts"][POOLED]}}


def alert_budget(settings, predictions=(), alerts=()):
    """A :class:`streams.drift.budget.AlertBudget` with the bounds the settings' channels export, of a
    run's published ``predictions`` (its vectors) and ``alerts`` records, where given."""
    from agents.app import false_alarm_bounds, pipeline_config
    from streams.drift.budget import AlertBudget

    budget = AlertBudget(false_alarm_bounds(pipeline_config(settings)))
    for stage, records in (("predictions", predictions), ("alerts", alerts)):
        for record in records:
            budget.add_record(stage, record)
    return budget


def run_file(path, settings, fmt: str = "auto", symbol: str | None = None, progress=None, budget=None,
             order: str = "time"):
    """:func:`evaluate_file`'s evaluation itself (:class:`streams.evaluation.Evaluation`), scored as the
    pipeline's steps come (:class:`streams.evaluation.RunScorer`): a file of millions of ticks keeps a
    few doubles per outcome, not its records. ``budget`` (:func:`alert_budget`), where given, counts the
    run's drift alerts."""
    return run_files([path], settings, fmt, symbol, progress, budget, order)


def run_files(paths, settings, fmt: str = "auto", symbol: str | None = None, progress=None, budget=None,
              order: str = "time"):
    """Several files as one run: their ticks merged in event time through one pipeline, as a worker
    that read them live would have learned them (a pair's consecutive days, several pairs of the same
    days; captures in the order received with ``order="received"``). One file is :func:`run_file`."""
    from agents.app import pipeline_config
    from connectors.recorded import opened
    from streams.evaluation import RunScorer
    from streams.pipeline import PartitionPipeline

    pipeline = PartitionPipeline(pipeline_config(settings))
    scorer = RunScorer()
    files = opened(paths, fmt, symbol, order)  # a large sorted dump is streamed, not held
    total = sum(f.count for f in files)
    items = files[0] if len(files) == 1 else heapq.merge(*files)  # event time, then the order given

    ticks, rejected, first_rejected, cut = 0, Counter(), None, ""
    sources = _SeriesSources(paths) if len(files) > 1 else None
    for done, item in enumerate(items, 1):
        if item.tick is None:
            if item.reason_code != "skip":
                rejected[item.reason_code] += 1
                first_rejected = first_rejected or item
                if item.reason_code == "truncated_file":
                    cut = f"; {item.reason}"
            continue
        ticks += 1
        if sources is not None:
            sources.check(item.tick, item.file_index)
        step = pipeline.on_tick(item.tick)
        scorer.add_step(step)
        if budget is not None:
            budget.add_step(step)
        if progress is not None and done % 5000 == 0:
            progress(done, total)
    name = str(paths[0]) if len(paths) == 1 else f"{len(paths)} files"
    if not ticks:
        first = f"; line {first_rejected.line}: {first_rejected.reason}" if first_rejected else ""
        rows = f"{total} row" + ("" if total == 1 else "s")
        raise NoTicks(f"{name}: no ticks in it ({rows} read, {sum(rejected.values())} rejected{first}); "
                      "check the file, --format and --symbol")
    if rejected:
        # The table covers the ticks that were read: say what was not (a cut-short capture included).
        codes = ", ".join(f"{code} {n}" for code, n in sorted(rejected.items()))
        print(f"livelearn: {name}: {sum(rejected.values())} row(s) rejected ({codes}){cut}", file=sys.stderr)
    for released, _ in pipeline.flush():
        scorer.add_step(released)
        if budget is not None:
            budget.add_step(released)
    return scorer.evaluation()


def _one_file(work: tuple) -> tuple[Any, Any]:
    """One file's evaluation and drift-alert budget, in a process of `--jobs` (pickled back)."""
    from pathlib import Path

    name, settings, fmt, symbol, order = work
    budget = alert_budget(settings)
    return run_file(Path(name), settings, fmt, symbol, None, budget, order), budget


def run(args, settings) -> int:
    import sys
    from pathlib import Path

    from cli.errors import CliError, require_broker
    from cli.processes import jobs_option

    jobs = jobs_option(args.jobs)
    if args.files:
        from cli.inputs import data_files
        from cli.processes import auto_file_jobs, usable_cpus

        files = [str(path) for path in data_files(args.files, "evaluate", args.format, args.symbol)]
        if jobs is None:
            jobs = auto_file_jobs([Path(name).stat().st_size for name in files], usable_cpus())
        results: dict[str, Any] = {}
        evaluations = {}
        budgets = {}  # per table: its drift alerts against their bounds
        joined = len(files)
        if args.joined and len(files) > 1:
            status = StatusLine(enabled=not args.quiet, every_s=0.0)  # called back every 5,000 ticks

            def progress(done: int, total: int) -> None:
                if status.due():
                    status.write(f"evaluate {len(files)} files joined: {done:,}/{total:,} ticks")

            budgets[JOINED] = alert_budget(settings)
            try:
                results[JOINED] = run_files([Path(name) for name in files], settings, args.format, args.symbol,
                                            progress, budgets[JOINED], args.order).summary()
            except NoTicks as exc:
                raise CliError(str(exc)) from None
            except OverlappingFiles as exc:
                raise CliError(str(exc), code=2) from None
            finally:
                status.close()
            files = []
        if len(files) > 1 and jobs > 1:
            from concurrent.futures.process import BrokenProcessPool

            from cli.processes import Processes

            with Processes(min(jobs, len(files))) as processes:
                work = [(name, settings, args.format, args.symbol, args.order) for name in files]
                try:
                    done = zip(files, processes.map(_one_file, work), strict=True)
                    for i, (name, (evaluation, budget)) in enumerate(done, 1):
                        evaluations[name], budgets[name] = evaluation, budget
                        results[name] = evaluation.summary()
                        if not args.quiet:
                            print(f"evaluate: {i}/{len(files)} files done ({Path(name).name})", file=sys.stderr,
                                  flush=True)
                except NoTicks as exc:
                    raise CliError(str(exc)) from None
                except BrokenProcessPool:
                    raise CliError("a process evaluating the files ended before its result (killed, or out of "
                                   "memory?): run again with fewer --jobs") from None
        for name in files:
            if name in evaluations:
                continue

            status = StatusLine(enabled=not args.quiet, every_s=0.0)

            def progress(done: int, total: int, name: str = name, status: StatusLine = status) -> None:
                if status.due():
                    status.write(f"evaluate {Path(name).name}: {done:,}/{total:,} ticks")

            budgets[name] = alert_budget(settings)
            try:
                evaluations[name] = run_file(Path(name), settings, args.format, args.symbol, progress, budgets[name],
                                             args.order)
            except NoTicks as exc:
                raise CliError(str(exc)) from None
            finally:
                status.close()
            results[name] = evaluations[name].summary()
        if len(files) > 1:
            # What several days say together: a file's table is short of evidence on its own.
            results[ALL_FILES] = pooled_over_files(list(evaluations.values()))
            budgets[ALL_FILES] = alert_budget(settings)
            for name in files:
                budgets[ALL_FILES].merge(budgets[name])
        for name, budget in budgets.items():
            results[name][DRIFT_ALERTS] = budget.summary()
        if args.json:
            print(json.dumps(finite(results), sort_keys=True))
            return 0
        for name, summary in results.items():
            title = (f"{len(files)} files pooled (each file's series apart in the intervals)" if name == ALL_FILES
                     else f"{joined} files joined in event time, one pipeline (label {settings.label}, "
                          f"vectors on {settings.predict_on} ticks)" if name == JOINED
                     else f"{name} (label {settings.label}, vectors on {settings.predict_on} ticks)")
            print(render(summary, title))
            for sentence in verdict(summary):
                print(sentence)
            for line in budgets[name].lines():
                print(line)
            print()
        return 0
    require_broker(settings)
    summary, budget = evaluate_topics(settings)
    if args.symbols:
        wanted = {s.strip().upper() for s in args.symbols.split(",")}
        summary = {k: v for k, v in summary.items() if k in wanted or k == "_counts"}
        budget = budget.of(wanted)
    summary[DRIFT_ALERTS] = budget.summary()
    if args.json:
        print(json.dumps(finite(summary), sort_keys=True))
        return 0
    if not any(not name.startswith("_") for name in summary):
        print(f"no predictions with outcomes in {settings.topic('predictions')} yet")
        for line in budget.lines():
            print(line)
        return 0
    print(render(summary, f"run {settings.topic_prefix}*"))
    for sentence in verdict(summary):
        print(sentence)
    for line in budget.lines():
        print(line)
    return 0
