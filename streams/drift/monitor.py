"""All drift channels of one symbol, and the incidents their checks open and resolve.

Channels (streams.drift.channel): FEATURE and VARIANCE over the drift features (return-like ones in
units of their usual size at that time of day once a complete day has been seen,
streams.drift.seasonality; optionally of recent volatility, streams.drift.volatility), CONCEPT over the
ensemble's per-outcome log-loss, PREDICTION over the published probability. The p-values of one check
are corrected together (Bonferroni, or Benjamini-Hochberg with ``correction="bh"``), so a check of 25
features raises a false alarm with probability at most ``alpha`` under no drift.

The VARIANCE channel's test, by default (``variance_test="cusum"``), is a sequential one on ``ret_1``
once a symbol has two days of event time behind it (streams.drift.cusum, on ``ret_1`` before any
scaling here: it learns its own hour profile); its alarms open incidents as a check's rejections do.
Before then, and alone with ``variance_test="volatility"``, a windowed test reports rises of
volatility only; a significant fall re-bases its reference without an alert (see
streams.drift.checks.VarianceCheck).

Persistence (``DriftConfig.persist_ms``, 60 s of event time by default): a rejection of any channel
but BASIS whose current window spans less event time than that (ticks: 100 events of a busy book are
seconds) is checked again that long after, out of turn, and opens an incident only if the change is
still there: rejected at ``CONFIRM_ALPHA`` in a stream the first rejection named, against the reference
that rejected it (an aged one is not taken again meanwhile); the alert then carries the first
rejection's figures. Why: in real
websocket captures most alerts were bursts of seconds (a sweep of the book; the shipped BTCUSDT one's
FEATURE and VARIANCE alerts were inside 10-second spells of 17x and 8-12x the capture's usual volatility),
gone a minute later, and a drift response (reset, promotion) to a burst of seconds is noise. Measured
on ten real five-minute captures (bench/drift_real.py --data, 78,638 vectors, two of them shipped):
FEATURE 4 -> 1, VARIANCE 5 -> 2, CONCEPT 2 -> 1, PREDICTION 1 -> 0 alerts; the price of it, x3
volatility from 40, 60 and 80% of each capture (bench/drift_real.py --only capture_bursts): found about
a minute after the change instead of seconds. One-minute bars (a current window of 100 of them spans 99
minutes) raise exactly what they did; so do synthetic and dataset streams a second apart. BASIS reports
a de-peg at once. The bound on false alarms stands: an alert needs the rejection at ``alpha`` it
always did.

Incidents: an alert opens (FIRING) when a check rejects; further rejections of the same channel are
de-duplicated unless their severity is higher (then the FIRING record is re-published, same alert
id, new severity); after ``resolve_after`` clean checks in a row a RESOLVED record with the same alert
id follows. Incidents below ``min_severity`` are tracked (and de-duplicated) but not published.

A rejection of the prediction channel is confirmed by re-scoring the inputs of both windows with the
model as it is now: a model that keeps learning moves its own outputs, and only a shift the inputs
explain is reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from streams.drift.channel import Channel
from streams.drift.checks import Ceiling
from streams.drift.config import BASIS_CONFIG, SEVERITIES, DriftConfig, severity
from streams.drift.cusum import VolatilityCusum
from streams.drift.seasonality import IntradayProfile
from streams.drift.statistics import adjust
from streams.drift.volatility import VolatilityScale

# The level at which the check made DriftConfig.persist_ms after a rejection confirms it. It only asks
# whether the change is still there: an alert needs the rejection at ``alpha`` too, so the bound on false
# alarms stands whatever this level is, and a change that lasts is not dropped because its p-value a
# minute later is just above ``alpha`` (tried on one-minute bars, confirming every rejection one event
# later at ``alpha`` itself: a shipped day's x3 burst rejected after 100 events was not confirmed at 101).
CONFIRM_ALPHA = 0.05


class DriftMonitor:
    """All drift channels of one symbol. Returns DriftAlert records (``schemas/drift_alert.avsc``)."""

    def __init__(self, symbol: str, config: DriftConfig | None = None, basis_config: DriftConfig | None = None):
        self.symbol = symbol
        self.config = config or DriftConfig()
        self.basis_config = basis_config or BASIS_CONFIG
        self.channels: dict[str, Channel] = {}
        self._unread_checks: dict[str, list[tuple[str, str, str, float, float]]] = {}
        self.sequence = 0
        half_life = self.config.volatility_half_life
        self.volatility = VolatilityScale(half_life=half_life) if half_life else None
        buckets = self.config.seasonal_buckets
        self.intraday = IntradayProfile(buckets=buckets) if buckets else None
        self.cusum: CusumChannel | None = None  # the VARIANCE channel with variance_test="cusum"

    def _channel(self, kind: str, streams: tuple[str, ...]) -> Channel:
        channel = self.channels.get(kind)
        if channel is None:
            config = self.basis_config if kind == "BASIS" else self.config
            channel = self.channels[kind] = Channel(kind, streams, config)
        return channel

    def update_features(self, values: dict[str, float], time_ms: int,
                        names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        if "FEATURE" not in self.channels:
            names = names or tuple(sorted(values))
        channel = self._channel("FEATURE", names or ())
        raw_return = values.get("ret_1", math.nan)
        intraday = self.__dict__.get("intraday")  # absent in a checkpoint from before the profile
        if intraday is not None:
            ready = intraday.ready
            values = intraday.scaled(values, time_ms)
            if intraday.ready and not ready:
                # The reference was taken in other units: collect it again from scaled values.
                for kind in ("FEATURE", "VARIANCE"):
                    if kind in self.channels:
                        self.channels[kind].rebase()
                        self.channels[kind].ceiling = None
        if self.volatility is not None:
            values = self.volatility.scaled(values, time_ms)
        row = [values.get(name, math.nan) for name in channel.streams]
        alerts = self._run(channel, row, time_ms)
        if self.config.variance_tests:
            if self.config.variance_test == "cusum" and "ret_1" in channel.streams:
                alerts += self._run_cusum(raw_return, row, channel.streams, time_ms)
            else:
                alerts += self._run(self._channel("VARIANCE", channel.streams), row, time_ms)
        return alerts

    def update_basis(self, deviations: dict[str, float], time_ms: int) -> list[dict[str, Any]]:
        """The symbol's log price minus each other pair's of its basis group at one event time, in
        basis points, by the other pair (streams.drift.basis). An alert names the pair it moved
        against (the comparison that binds, streams.drift.checks.BasisCheck). A group that gains or
        loses a pair starts the channel afresh, its comparisons being others; an incident open on the
        old one is resolved then, so that no subscriber waits for a RESOLVED record that cannot come."""
        streams = tuple(sorted(deviations))
        channel = self.channels.get("BASIS")
        closed: list[dict[str, Any]] = []
        if channel is None or channel.streams != streams:
            if channel is not None and channel.open_alert is not None:
                closed = self._resolve(channel, time_ms)
            channel = self.channels["BASIS"] = Channel("BASIS", streams, self.basis_config)
        return closed + self._run(channel, [deviations[s] for s in streams], time_ms)

    def update_error(self, loss: float, time_ms: int, outcome: Any = None,
                     rescore: Callable[[Any], float] | None = None) -> list[dict[str, Any]]:
        """The log-loss of a matured forecast. With the ``outcome`` (inputs and label) and ``rescore``
        (the current model's loss on one), a rejection is confirmed as the prediction channel's is: both
        windows re-scored by the model as it is now. A learning model's losses move as it learns (on
        drift-free synthetic streams, 4 of the 6 alarms of bench/drift_quiet.py at LOW were this
        channel's); only losses the outcomes themselves make worse are concept drift."""
        return self._run(self._channel("CONCEPT", ("log_loss",)), [loss], time_ms, outcome, rescore)

    def update_prediction(self, p_up: float, time_ms: int, inputs: Any = None,
                          rescore: Callable[[Any], float] | None = None) -> list[dict[str, Any]]:
        """A published probability. With the prediction's ``inputs`` and ``rescore`` (the current
        model's probability for some inputs), a rejection is confirmed with the inputs of both windows
        re-scored by the model as it is now: a model that keeps learning moves its own output
        distribution, which is not drift of the data. Only a shift the inputs explain is reported;
        otherwise the re-scored values stand for both windows."""
        return self._run(self._channel("PREDICTION", ("probability_up",)), [p_up], time_ms, inputs, rescore)

    def take_checks(self) -> list[tuple[str, str, str, float, float]]:
        """The test results of each channel's latest check since the last call, as ``(channel, stream,
        test, statistic, p)``: what the metrics show."""
        checks = [result for results in self._checks().values() for result in results]
        self._unread_checks = {}
        return checks

    def _checks(self) -> dict[str, list[tuple[str, str, str, float, float]]]:
        # Absent in a monitor restored from a checkpoint written before it existed.
        return self.__dict__.setdefault("_unread_checks", {})

    def _publishable(self, alert: dict[str, Any]) -> bool:
        return SEVERITIES.index(alert["severity"]) >= SEVERITIES.index(self.config.min_severity)

    def _run(self, channel: Channel, row: list[float], time_ms: int, payload: Any = None,
             rescore: Callable[[Any], float] | None = None) -> list[dict[str, Any]]:
        due = channel.add(row, time_ms, payload)
        max_age_ms = channel.config.reference_max_age_hours * 3_600_000
        if (max_age_ms and channel.kind != "VARIANCE" and channel.open_alert is None and channel.pending is None
                and channel.config.reference == "fixed" and channel.reference_aged(max_age_ms)):
            channel.refresh()
        persist = channel.config.persist_ms  # 0 in BASIS_CONFIG: a de-peg is reported at once
        pending = channel.pending
        confirming = pending is not None and time_ms - pending[0] >= persist
        if not due and not confirming:
            return []
        ceiling = channel.ceiling
        # While a quieter reference fills (a fall), the windows that hold the fall are not pooled: a step
        # of level reads as serial correlation and would widen the tests that follow. A check made out of
        # turn to confirm a rejection pools nothing, so the scheduled checks see what they saw without it.
        checked = channel.check(pool=channel.refill_at is None and due)
        if due and ceiling is not None and time_ms - ceiling.time_ms > channel.config.quiet_spell_hours * 3_600_000:
            # The fall is old: if volatility is still below the level before it, the quiet level is
            # the usual one now (the reference taken in it stays); if not, it came back, and the
            # reference from before the fall is the usual level again (taken back: no blind re-base).
            channel.ceiling = None
            if not checked.under_ceiling:
                ceiling.restore(channel)
                channel.refill_at = None
        results = checked.results
        if confirming:
            channel.pending = None  # confirmed below, or the change did not last: nothing re-based
        if not results:
            return []
        # A confirmation asks whether the streams the first rejection named still differ (another feature's
        # change is its own, tested at alpha when the check is also a scheduled one); any of the variance
        # channel's, which all measure the size of returns, each at its own scale.
        named = pending[1][2] if confirming and pending is not None and channel.kind != "VARIANCE" else None
        correction = channel.config.correction
        alpha = CONFIRM_ALPHA if confirming else channel.config.alpha
        rejected = _rejected(results, correction, alpha, named)
        if rejected and rescore is not None and channel.reference_payloads:
            channel.rescore_reference(rescore)
            channel.rescore_recent(rescore)
            checked = channel.check(pool=False)
            results = checked.results
            rejected = _rejected(results, correction, alpha, named)
        confirmed = confirming and bool(rejected)
        if confirming and not rejected and due:
            rejected = _rejected(results, correction, channel.config.alpha, None)
        self._checks()[channel.kind] = [(channel.kind, r.stream, r.test, r.statistic, r.p) for r in results]
        if rejected:
            if confirmed and pending is not None:
                found = pending[1]  # the change lasted: the incident is the rejection that began it
            else:
                (stream, test, statistic, p, effect, _), adj = min(rejected, key=lambda item: item[1])
                basis = channel.kind == "BASIS"
                found = (severity(adj, effect, test, channel.config.alpha), {
                    "test_name": test, "statistic": float(statistic), "p_value": float(p),
                    "adjusted_p_value": float(adj), "effect_size": float(effect),
                    "reference_start_ms": channel.reference_times[0], "reference_end_ms": channel.reference_times[1],
                    "current_start_ms": channel.current_times[0], "current_end_ms": channel.current_times[1],
                }, ["basis_bps"] if basis else sorted({r.stream for r, _ in rejected}),
                    stream if basis else None)  # the BASIS channel's streams are the other pairs
                if persist and channel.open_alert is None and channel.current_times[1] - channel.current_times[0] < persist:
                    # A new incident only for a change seen over persist_ms of event time: a
                    # current window shorter than that (ticks) is checked again then; one-minute bars' spans
                    # 100 minutes. Rejections meanwhile wait too.
                    if channel.pending is None:
                        channel.pending = (time_ms, found)
                    return []
            alert = self._fire(channel, channel.kind, found[0], time_ms, *found[1:])
            if self.config.rebase_on_alert:
                # A new incident or a worse one: a new level. The same, no worse: follow the new regime
                # so that it can resolve once stable.
                channel.rebase()
                if alert is not None:
                    channel.ceiling = None  # volatility rose above the level before any fall
            return [alert] if alert is not None and self._publishable(alert) else []
        if not due:
            return []
        if checked.volatility_fell and self.config.rebase_on_alert:
            # The volatility test reports rises only; a significant fall takes the reference again from
            # the next events (testing against this one meanwhile), without an alert, or a reference taken
            # in a busy spell would hide every later rise below its level. The level before the first fall
            # is kept for a while (streams.drift.checks.VarianceCheck).
            if channel.refill_at is not None:
                return []  # still collecting the quieter reference: this fall is the same one
            if channel.ceiling is None and channel.config.quiet_spell_hours > 0:
                channel.ceiling = Ceiling.of(channel, time_ms)
            channel.refill()
            return []
        if channel.open_alert is not None:
            channel.clean_checks += 1
            if channel.clean_checks >= self.config.resolve_after:
                return self._resolve(channel, time_ms, channel.current_times)
        return []

    def _run_cusum(self, r: float, row: list[float], streams: tuple[str, ...], time_ms: int) -> list[dict[str, Any]]:
        """The VARIANCE channel as a sequential test: an alarm opens an incident (or re-publishes it
        with a higher severity); ``resolve_after`` checks in a row that find the sum at zero, once the
        detector's hold after its last alarm is over, resolve it (the rise has ended, or the
        detector's level has caught up with it). A check is every ``check_every`` events, as the
        windowed channels' are (what the metrics show). Until the detector may alarm (its warm-up: two
        days of event time, for its hour profile) the windowed test runs as without it, so that a
        series shorter than that is watched too; then the windowed channel is dropped and an incident
        it had open is the detector's."""
        state = self.__dict__.get("cusum")
        if state is None:
            detector = VolatilityCusum(self.config.cusum_threshold, warmup_hours=self.config.cusum_warmup_hours)
            state = self.cusum = CusumChannel(detector)
        detector = state.detector
        alarm = detector.update(r, time_ms)
        if not detector.warm:
            return self._run(self._channel("VARIANCE", streams), row, time_ms)
        windowed = self.channels.pop("VARIANCE", None)
        if windowed is not None and windowed.open_alert is not None:
            state.open_alert = windowed.open_alert
        state.events += 1
        if alarm is not None:
            level = severity(alarm.p_value, alarm.scale, "cusum_scale", self.config.alpha)
            alert = self._fire(state, "VARIANCE", level, time_ms, {
                "test_name": "cusum_scale", "statistic": alarm.statistic, "p_value": alarm.p_value,
                "adjusted_p_value": alarm.p_value, "effect_size": alarm.scale,
                "reference_start_ms": detector.first_ms, "reference_end_ms": alarm.start_ms,
                "current_start_ms": alarm.start_ms, "current_end_ms": time_ms,
            }, ["ret_1"], None)
            return [alert] if alert is not None and self._publishable(alert) else []
        if state.events % self.config.check_every:
            return []
        statistic = detector.statistic
        self._checks()["VARIANCE"] = [("VARIANCE", "ret_1", "cusum_scale", statistic, math.exp(-statistic))]
        if state.open_alert is not None:
            # Clean: the sum is back at zero after the hold (a burst keeps it above zero; a level that
            # has caught up with a lasting rise lets it fall back).
            clean = not detector.holding and statistic == 0.0
            state.clean_checks = state.clean_checks + 1 if clean else 0
            if state.clean_checks >= self.config.resolve_after:
                return self._resolve(state, time_ms, (state.open_alert["current_start_ms"], time_ms))
        return []

    def _fire(self, incident: Channel | CusumChannel, kind: str, level: str, time_ms: int,
              measured: dict[str, Any], affected: list[str], reference_symbol: str | None) -> dict[str, Any] | None:
        """A rejection: opens an incident, or re-opens the open one (same alert id) when ``level`` is more
        severe; None when the open one is at least as severe (de-duplicated). ``measured`` holds the
        test's fields of the record (test, statistic, p-values, effect, reference and current windows)."""
        incident.clean_checks = 0
        opened = incident.open_alert
        if opened is not None and SEVERITIES.index(level) <= SEVERITIES.index(opened["severity"]):
            return None
        if opened is None:
            self.sequence += 1
        alert_id = opened["alert_id"] if opened else f"{self.symbol}-{kind.lower()}-{time_ms}-{self.sequence}"
        alert = {"alert_id": alert_id, "symbol": self.symbol, "kind": kind, **measured, "severity": level,
                 "status": "FIRING", "affected_features": affected,
                 "recommended_action": _action(kind, level, measured["test_name"]), "created_time_ms": time_ms,
                 "reference_symbol": reference_symbol}
        incident.open_alert = alert
        return alert

    def _resolve(self, incident: Channel | CusumChannel, time_ms: int,
                 current: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """Closes the open incident: its FIRING record again as RESOLVED, with the current window it
        ended in where one is given; nothing to publish below ``min_severity``."""
        assert incident.open_alert is not None
        resolved = {**incident.open_alert, "status": "RESOLVED", "created_time_ms": time_ms}
        if current is not None:
            resolved["current_start_ms"], resolved["current_end_ms"] = current
        incident.open_alert, incident.clean_checks = None, 0
        return [resolved] if self._publishable(resolved) else []


class CusumChannel:
    """The VARIANCE channel's state with the sequential test: the detector and the incident it opened."""

    __slots__ = ("detector", "open_alert", "clean_checks", "events")

    def __init__(self, detector: VolatilityCusum):
        self.detector = detector
        self.open_alert: dict[str, Any] | None = None
        self.clean_checks = 0
        self.events = 0


def _rejected(results: list[Any], correction: str, alpha: float, streams: list[str] | None) -> list[tuple[Any, float]]:
    """The results rejected at ``alpha`` after the correction over all of them, of ``streams`` only if given."""
    adjusted = adjust([r.p for r in results], correction)
    return [(r, a) for r, a in zip(results, adjusted, strict=True) if a < alpha and (streams is None or r.stream in streams)]


def _action(kind: str, level: str, test: str) -> str:
    if kind == "CONCEPT" and level in ("HIGH", "CRITICAL"):
        return "reset_member"
    if kind == "CONCEPT":
        return "raise_learning_rate"
    if test == "cusum_scale":
        return "none"  # a sequential test has no reference: its level follows by itself
    return "rebase_reference"
