"""The tick gate (issue #19): one poisoned tick changes nothing for the other ticks of its symbol, each
poison is refused with its reason, genuine jumps and gaps get through after confirmation, and the real
data shipped here is never refused."""

from __future__ import annotations

import copy
import math

import pytest

from agents.app import pipeline_config
from agents.settings import Settings
from connectors.recorded import read_file
from streams.features import FeatureEngine
from streams.pipeline import PartitionPipeline
from streams.tick_gate import GateConfig, TickGate
from streams.ticks import make_tick
from tests.conftest import DATA

KLINES = DATA / "binance" / "klines" / "spot" / "BTCUSDT-1m-2020-01-01.zip"
REAL_FILES = sorted((DATA / "binance" / "klines").rglob("*.zip")) + sorted((DATA / "binance" / "ws").glob("*"))
NOW_MS = 1_800_000_000_000  # 2027: after every shipped tick


def ticks_of(path, limit=None):
    ticks = [item.tick for item in read_file(path) if item.tick is not None]
    return ticks[:limit] if limit else ticks


def run(ticks):
    """Predictions (latency aside) by prediction id, and the rejection of each input in order."""
    pipeline = PartitionPipeline(pipeline_config(Settings()))
    predictions, rejections = {}, []
    for tick in ticks:
        step = pipeline.on_tick(tick, NOW_MS)
        rejections.append(step.rejection[1] if step.rejection else None)
        for output in step.records:
            if output.stage == "predictions":
                record = dict(output.record)
                record.pop("latency_ms")
                predictions[record["prediction_id"]] = record
    return predictions, rejections


def poisoned(ticks, at):
    good = ticks[at]
    poison = []
    hour_ahead = copy.deepcopy(good)
    hour_ahead["event_time_ms"] += 3_600_000
    poison.append(("future_event", hour_ahead))
    year_2099 = copy.deepcopy(good)
    year_2099["event_time_ms"] = 4_081_000_000_000
    poison.append(("future_event", year_2099))
    poison.append(("duplicate_tick", copy.deepcopy(good)))
    for price in (1e-300, 1e308, good["price"] * 3):
        bad = copy.deepcopy(good)
        bad["price"] = bad["open"] = bad["high"] = bad["low"] = price
        poison.append(("implausible_value", bad))
    stream = ticks[:at + 1] + [p for _, p in poison] + ticks[at + 1:]
    return stream, [code for code, _ in poison]


def test_poison_mid_stream_changes_no_prediction_and_each_is_refused_with_its_reason():
    ticks = ticks_of(KLINES, 900)
    clean, clean_rejections = run(ticks)
    assert not any(clean_rejections)
    stream, codes = poisoned(ticks, 600)
    dirty, rejections = run(stream)
    assert rejections[601:601 + len(codes)] == codes
    assert not any(rejections[:601]) and not any(rejections[601 + len(codes):])
    assert dirty == clean
    assert len(clean) == len(ticks)


def test_a_second_market_of_one_name_is_refused_and_the_first_keeps_its_predictions():
    """Binance names a spot and a USD-M futures pair alike (BTCUSDT). Their dumps replayed into one ticks
    topic met in one series, prices alternating between the two markets every minute, every kline
    applied. Now the second kline closing in a minute is refused, and the first market's predictions
    are those it has alone. The second market here is the real futures day 4 bp higher, with its own
    volumes, as a spot day of it would trade."""
    futures = ticks_of(DATA / "binance" / "klines" / "um" / "BTCUSDT-1m-2022-09-05.zip", 400)
    spot = copy.deepcopy(futures)
    for tick in spot:
        for name in ("price", "open", "high", "low"):
            tick[name] *= 1.0004
        tick["quantity"] *= 3.1
    alone, _ = run(futures)
    both, rejections = run([tick for pair in zip(futures, spot, strict=True) for tick in pair])
    assert rejections[0::2] == [None] * 400 and rejections[1::2] == ["conflicting_tick"] * 400
    assert both == alone
    gate = TickGate()
    assert gate.check(futures[0]) is None
    gate.accept(futures[0])
    assert "two sources under one name" in gate.check(spot[0])[1]


def test_trade_ids_that_go_back_are_refused_and_ids_that_start_again_are_accepted_after_confirmation():
    trades = [t for t in ticks_of(DATA / "binance" / "ws" / "spot_btcusdt_20240808.gz") if t["kind"] == "TRADE"][:400]
    clean, _ = run(trades)
    stray = copy.deepcopy(trades[200])  # an id of the past at the present time: not this source's
    stray["sequence_id"] = trades[150]["sequence_id"]
    stray["price"] += 0.01
    dirty, rejections = run(trades[:201] + [stray] + trades[201:])
    assert rejections[201] == "conflicting_tick" and not any(rejections[:201] + rejections[202:])
    assert dirty == clean
    restarted = copy.deepcopy(trades)
    for i, tick in enumerate(restarted[300:], 1):
        tick["sequence_id"] = i  # a producer that numbers its ticks from 1 again
    _, rejections = run(restarted)
    assert rejections[300:302] == ["conflicting_tick"] * 2 and not any(rejections[:300] + rejections[302:])


@pytest.mark.parametrize("offset", [10**9, -(10**8)], ids=["second-source-ids-higher", "second-source-ids-lower"])
def test_interleaved_trades_of_two_sources_settle_on_one_and_refuse_the_other(offset):
    """Real trades and a second source under the same name (4 bp higher, its own ids, its times a few
    hundred milliseconds apart), merged in event time, make runs of a few trades of each. Before, a
    run of ``confirm`` trades of the lower-id source was taken for ids starting again, and the series
    switched source at every such run (1,691 of 6,000 refused, the rest mixed). Now a line of ids that
    goes on after a restart was confirmed proves two sources: within the first few trades one source
    keeps the name and every later trade of the other is refused, whichever source's ids are higher."""
    import random

    trades = [t for t in ticks_of(DATA / "binance" / "ws" / "spot_btcusdt_20240808.gz") if t["kind"] == "TRADE"][:3000]
    rng = random.Random(7)
    other, time_ms = copy.deepcopy(trades), 0
    for tick in other:  # its ids rise with its own event time, as one source's do
        tick["price"] *= 1.0004
        tick["sequence_id"] += offset
        tick["event_time_ms"] = time_ms = max(time_ms, tick["event_time_ms"] + rng.randrange(0, 400))
    merged = sorted([(t["event_time_ms"], 0, i, t) for i, t in enumerate(trades)]
                    + [(t["event_time_ms"], 1, i, t) for i, t in enumerate(other)], key=lambda row: row[:3])
    _, rejections = run([row[3] for row in merged])
    source = [row[1] for row in merged]
    assert set(rejections) <= {None, "conflicting_tick"}
    kept = next(s for r, s in zip(reversed(rejections), reversed(source), strict=True) if r is None)
    settled = next(i for i in range(len(merged)) if all(
        (r is None) == (s == kept) for r, s in zip(rejections[i:], source[i:], strict=True)))
    assert settled <= 150 and sum(r is not None for r in rejections) >= 2950, settled  # measured 39, 93; 36, 41 of the other
    gate = TickGate()
    for tick in trades[:3]:
        gate.check(tick)
        gate.accept(tick)
    late_ids = copy.deepcopy(trades[3])
    late_ids["sequence_id"] = trades[0]["sequence_id"]
    assert gate.check(late_ids)[0] == "conflicting_tick"


def test_a_second_source_takes_over_once_the_first_has_been_silent_for_the_jump_bound():
    """A source that stopped does not hold its name for ever: once the accepted line has sent nothing
    for the jump bound in event time (ten minutes here), the other source's next tick is accepted."""
    t0 = 1_700_000_000_000
    gate = TickGate()

    def trade(i, sequence, minutes=0.0):
        return make_tick("X", "TRADE", t0 + i * 1000 + int(minutes * 60_000), 100.0, 1.0, first_trade_id=sequence,
                         last_trade_id=sequence, sequence_id=sequence)

    a = [trade(i, 1000 + i) for i in range(40)]
    b = [trade(40 + i, 10 + i) for i in range(4)]  # a run of the lower source: ids "start again"
    a_again = [trade(44 + i, 1040 + i) for i in range(3)]
    verdicts = verdicts_of(gate, a + b + a_again)
    assert verdicts[40:42] == ["conflicting_tick"] * 2 and verdicts[42:44] == [None] * 2
    assert verdicts[44:] == [None] * 3  # the first line goes on: it keeps the name
    assert verdicts_of(gate, [trade(47, 14), trade(48, 15)]) == ["conflicting_tick"] * 2
    later = []
    for k in range(1, 23):  # every 30 s for 11 minutes, another symbol of the partition trading too
        later += [make_tick("Y", "TRADE", t0 + 48_000 + k * 30_000, 50.0, 1.0), trade(48, 15 + k, minutes=k / 2)]
    verdicts = verdicts_of(gate, later)
    assert not any(verdicts[0::2])
    assert verdicts[1::2] == ["conflicting_tick"] * 19 + [None] * 3  # 602 s after the first line's last


def verdicts_of(gate: TickGate, ticks) -> list[str | None]:
    """Each tick's refusal code (None: accepted, and taken into the gate's state)."""
    verdicts = []
    for tick in ticks:
        refusal = gate.check(tick)
        if refusal is None:
            gate.accept(tick)
        verdicts.append(refusal and refusal[0])
    return verdicts


def test_a_genuine_new_price_level_is_accepted_after_confirmation():
    t0 = 1_700_000_000_000
    # A 34% log move that stays.
    verdicts = verdicts_of(TickGate(GateConfig(confirm=3)), [
        make_tick("X", "TRADE", t0 + i * 1000, 100.0 if i < 30 else 140.0, 1.0, first_trade_id=i) for i in range(60)])
    assert verdicts[30:32] == ["implausible_value"] * 2
    assert not any(verdicts[:30]) and not any(verdicts[32:])


def test_a_genuine_gap_is_accepted_after_confirmation_and_coarse_bars_never_refused():
    t0 = 1_700_000_000_000
    times = [t0 + i * 60_000 for i in range(100)] + [t0 + 7_200_000 + i * 60_000 for i in range(100, 130)]
    verdicts = verdicts_of(TickGate(), [make_tick("X", "KLINE", t, 100.0, 1.0, high=100.0, low=100.0) for t in times])
    assert verdicts[100:102] == ["future_event"] * 2
    assert not any(verdicts[:100]) and not any(verdicts[102:])
    daily = TickGate()
    for i in range(30):
        tick = make_tick("Y", "KLINE", t0 + i * 86_400_000, 100.0 + i, 1.0, high=200.0, low=50.0)
        assert daily.check(tick, NOW_MS) is None
        daily.accept(tick)


@pytest.mark.parametrize("at,ahead_ms", [(0, 3_600_000), (1, 3_600_000), (1, 30 * 86_400_000)],
                         ids=["first-an-hour-ahead", "second-an-hour-ahead", "second-a-month-ahead"])
def test_a_symbol_whose_unjudged_first_ticks_ran_ahead_starts_again_from_the_genuine_ones(at, ahead_ms):
    """A symbol's first tick in an empty partition and its first gap have nothing to be judged by. One
    of them stamped ahead moved the symbol's clock, and every genuine tick up to that time was
    dead-lettered as late (an hour of klines; a month ahead, the whole day: 1,438 of 1,440). Once
    ``confirm`` consecutive late ticks agree, the symbol starts again from them: ``confirm - 1`` are
    dead-lettered, and from then on its predictions are those of a pipeline that never saw the
    outlier or the ticks before it."""
    ticks = ticks_of(KLINES, 400)
    stream = copy.deepcopy(ticks)
    stream[at]["event_time_ms"] += ahead_ms
    pipeline = PartitionPipeline(pipeline_config(Settings()))
    rejections, after, restarts = [], [], []
    for i, tick in enumerate(stream):
        step = pipeline.on_tick(tick, NOW_MS)
        rejections.append(step.rejection[1] if step.rejection else None)
        restarts += [i] if "SYMBOL_RESTART" in step.stats.model_events else []
        after += [{k: v for k, v in o.record.items() if k != "latency_ms"}
                  for o in step.records if o.stage == "predictions" and i > at + 2]
    assert rejections[at + 1:at + 3] == ["late_event"] * 2
    assert not any(rejections[:at + 1]) and not any(rejections[at + 3:])
    assert pipeline.gate.rewound == 1 and restarts == [at + 3]  # counted by livelearn_model_events_total
    fresh, fresh_rejections = run(ticks[at + 3:])
    assert not any(fresh_rejections)
    assert after == list(fresh.values()) and len(after) == len(ticks) - at - 3


def test_late_ticks_never_restart_a_symbol_whose_clock_was_judged():
    """Once a symbol's clock has been judged against accepted ticks, late ticks are dead-lettered and
    its models are kept, however many there are (a tick within the jump bound ahead costs the ticks
    up to its time; larger jumps are refused before they move the clock). The genuine kline of the
    minute the displaced one took is refused as a second kline closing then (one source sends one)."""
    ticks = ticks_of(KLINES, 200)
    stream = copy.deepcopy(ticks)
    stream[100]["event_time_ms"] += 300_000  # five minutes: within the 10-minute bound
    _, rejections = run(stream)
    assert rejections[101:105] == ["late_event"] * 4
    assert rejections[105] == "conflicting_tick" and not any(rejections[106:])


def test_a_gate_from_a_checkpoint_of_an_earlier_version_loads_with_the_new_fields_at_their_defaults():
    import pickle

    from streams.tick_gate import SymbolGate

    gate = TickGate()
    verdicts_of(gate, ticks_of(KLINES, 10))
    state = gate.symbols["BTCUSDT"]
    del state.late_run, state.provisional, state.sequences, state.kline, state.id_run
    del gate.rewound
    loaded = pickle.loads(pickle.dumps(gate))
    assert isinstance(loaded.symbols["BTCUSDT"], SymbolGate)
    assert loaded.symbols["BTCUSDT"].late_run == [] and loaded.symbols["BTCUSDT"].provisional is False
    assert loaded.symbols["BTCUSDT"].sequences == {} and loaded.symbols["BTCUSDT"].kline is None
    assert loaded.rewound == 0 and loaded.symbols["BTCUSDT"].last_time == state.last_time
    assert verdicts_of(loaded, ticks_of(KLINES, 20)[10:]) == [None] * 10


def test_ticks_ahead_of_the_wall_clock_are_refused_when_a_clock_is_given():
    gate = TickGate(GateConfig(clock_ahead_ms=300_000))
    tick = make_tick("X", "TRADE", NOW_MS + 301_000, 100.0, 1.0)
    assert gate.check(tick, NOW_MS)[0] == "future_event"
    assert gate.check(tick) is None


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_no_tick_of_the_shipped_real_data_is_refused(path):
    gate = TickGate()
    ticks = ticks_of(path)
    refused = []
    for tick in ticks:
        refusal = gate.check(tick, NOW_MS)
        if refusal is None:
            gate.accept(tick)
        else:
            refused.append(refusal)
    assert ticks and refused == []


def test_the_feature_engine_stays_finite_over_the_whole_range_the_gate_lets_through():
    engine = FeatureEngine()
    low, high = GateConfig().price_range
    t0 = 1_700_000_000_000
    for i in range(200):
        price = high if i % 2 else low
        vector = engine.update(make_tick("X", "TRADE", t0 + i, price, GateConfig().max_quantity if i % 3 else 1e-12,
                                         is_buyer_maker=i % 2 == 0))
        assert all(math.isfinite(v) for v in vector["values"].values())


def test_the_gate_can_be_switched_off():
    assert TickGate(GateConfig(enabled=False)).check(make_tick("X", "TRADE", 4_081_000_000_000, 1e-300, 1.0),
                                                     NOW_MS) is None
    config = pipeline_config(Settings(gate="off", gate_confirm="5"))
    assert not config.gate.enabled and config.gate.confirm == 5


def test_a_reorder_window_undoes_displacements_smaller_than_itself():
    ticks = [t for t in ticks_of(DATA / "binance" / "ws" / "spot_btcusdt_20240808.gz") if t["kind"] == "TRADE"][:3000]
    blocks: list[list[dict]] = []
    for tick in ticks:  # ticks of one event time stay together, in their order
        if blocks and blocks[-1][0]["event_time_ms"] == tick["event_time_ms"]:
            blocks[-1].append(tick)
        else:
            blocks.append([tick])
    for i in range(0, len(blocks) - 1, 2):  # swap neighbours less than 500 ms apart
        if blocks[i + 1][0]["event_time_ms"] - blocks[i][0]["event_time_ms"] < 500:
            blocks[i], blocks[i + 1] = blocks[i + 1], blocks[i]
    shuffled = [tick for block in blocks for tick in block]
    assert shuffled != ticks

    def predictions(stream, reorder_ms):
        pipeline = PartitionPipeline(pipeline_config(Settings(reorder_ms=str(reorder_ms))))
        steps = []
        for i, tick in enumerate(stream):
            step = pipeline.on_tick(tick, NOW_MS, origin=i)
            steps += [(step, i)] if not reorder_ms else step.released
        steps += pipeline.flush(NOW_MS)
        out = [{k: v for k, v in o.record.items() if k != "latency_ms"}
               for step, _ in steps for o in step.records if o.stage == "predictions"]
        return out, [(origin, step.rejection[1]) for step, origin in steps if step.rejection]

    in_order, _ = predictions(ticks, 0)
    reordered, rejected = predictions(shuffled, 1000)
    assert reordered == in_order and rejected == []
    _, late = predictions(shuffled, 0)
    assert late and {code for _, code in late} == {"late_event"}


def test_random_corruptions_of_real_ticks_never_raise_and_every_output_stays_finite():
    """One real tick in ten followed by a corrupted copy of itself (values 0, negative, 1e-300, 1e300,
    inf, NaN, scaled by 1e3 or 1e-3, times a day or a year off, another kind, ids and flags changed),
    through the Avro codec as a worker decodes it: nothing raises, each input is applied or refused
    with a reason code, and no output record carries a non-finite number."""
    import random

    from schemas.codec import AvroCodec, EncodeError
    from streams.pipeline import Step

    rng = random.Random(7)
    codec = AvroCodec.for_topic_schema("tick")
    numbers = ("price", "quantity", "open", "high", "low", "quote_volume", "taker_buy_volume", "bid_price",
               "bid_qty", "ask_price", "ask_qty")
    weird = (0.0, -1.0, 1e-300, 1e300, 5e-324, math.inf, math.nan, 1e-12, 1e12)

    def corrupt(tick):
        tick = dict(tick)
        for _ in range(rng.randint(1, 3)):
            choice = rng.random()
            if choice < 0.5:
                name = rng.choice(numbers)
                if tick.get(name) is None or rng.random() < 0.5:
                    tick[name] = rng.choice(weird)
                else:
                    tick[name] *= rng.choice((1e3, 1e-3, 1.5, 0.5, -1.0))
            elif choice < 0.7:
                tick["event_time_ms"] += rng.choice((-86_400_000, -1000, 1, 3_600_000, 31_536_000_000))
            elif choice < 0.8:
                tick["kind"] = rng.choice(("TRADE", "AGG_TRADE", "KLINE", "BOOK_TICKER"))
            elif choice < 0.9:
                tick[rng.choice(("trade_count", "first_trade_id", "sequence_id"))] = rng.choice((None, 0, -1, 2**62))
            else:
                tick["is_buyer_maker"] = rng.choice((None, True, False))
        return tick

    pipeline = PartitionPipeline(pipeline_config(Settings()))
    outcomes: dict[str, int] = {}
    non_finite = []
    for tick in ticks_of(DATA / "binance" / "ws" / "spot_btcusdt_20240808.gz", 3000):
        for fed in [tick, corrupt(tick)] if rng.random() < 0.1 else [tick]:
            try:
                value = codec.encode(fed)
            except EncodeError:
                outcomes["not encodable"] = outcomes.get("not encodable", 0) + 1
                continue
            step: Step = pipeline.on_tick(codec.decode(value), NOW_MS)
            code = step.rejection[1] if step.rejection else "applied"
            outcomes[code] = outcomes.get(code, 0) + 1
            for output in step.records:
                for name, value in output.record.items():
                    inner = value.values() if isinstance(value, dict) else [value]
                    non_finite += [(output.stage, name) for v in inner if isinstance(v, float) and not math.isfinite(v)]
    assert not non_finite
    refused = sum(n for code, n in outcomes.items() if code != "applied")
    assert outcomes["applied"] >= 2900 and refused >= 200, outcomes
    assert set(outcomes) <= {"applied", "not encodable", "invalid_value", "invalid_time", "future_event",
                             "implausible_value", "duplicate_tick", "conflicting_tick", "late_event"}, outcomes
