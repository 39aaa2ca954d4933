"""Kafka message keys of ticks and feedback: the symbol's basis group.

The pairs of one base asset (BTCUSDT, BTCUSDC, BTCFDUSD, ...) are keyed alike, so Kafka's partitioner
puts them in one partition and one worker sees all of them: the basis channel compares each pair's
price with the others' (streams.drift.basis), which needs them side by side. Feedback is keyed the same
way, so it reaches the partition that holds the symbol's model. Output records (features, predictions,
alerts) stay keyed by symbol.

Groups come from ``LIVELEARN_BASIS_GROUPS``: ``auto`` (the default) names a pair's group by its base
asset, the symbol without a dollar quote-asset suffix (and without a ``_PERP`` or delivery-date suffix
of a futures contract); ``off`` keys by symbol; or explicit groups ``NAME=SYM1,SYM2;NAME2=...`` (other
symbols key by themselves).

>>> groups = BasisGroups.parse("auto")
>>> groups.key("BTCUSDT"), groups.key("BTCFDUSD"), groups.key("BTCUSD_PERP"), groups.key("ETHBTC"), groups.key("ELEC2")
('BTC', 'BTC', 'BTC', 'ETHBTC', 'ELEC2')
>>> BasisGroups.parse("off").key("BTCUSDT")
'BTCUSDT'
>>> BasisGroups.parse("stable=BTCUSDT,BTCUSDC").key("BTCUSDC")
'stable'
"""

from __future__ import annotations

import re

# Dollar quote assets, in the order a group prefers its reference pair (the most liquid first). Only
# quotes meant to be worth the same go in one group: BTCUSDT and BTCUSDC should trade at one price,
# while ETHBTC against ETHUSDT moves with the price of bitcoin, so it is no basis.
QUOTES: tuple[str, ...] = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI", "USD")
_CONTRACT = re.compile(r"_(PERP|\d{6})$")


class BasisGroups:
    """Which basis group a symbol belongs to (its Kafka key) and a group's preferred reference pair."""

    def __init__(self, mode: str, explicit: dict[str, str] | None = None):
        self._mode = mode
        self._explicit = dict(explicit or {})

    @classmethod
    def parse(cls, text: str) -> BasisGroups:
        text = text.strip()
        if text.lower() in ("", "auto"):
            return cls("auto")
        if text.lower() == "off":
            return cls("off")
        explicit: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            name, sep, members = part.partition("=")
            symbols = [s.strip().upper() for s in members.split(",") if s.strip()]
            if not sep or not name.strip() or len(symbols) < 2:
                raise ValueError(f"LIVELEARN_BASIS_GROUPS: {part!r} is not NAME=SYMBOL,SYMBOL[,...] "
                                 "(a group needs two pairs or more); or use auto or off")
            for symbol in symbols:
                if symbol in explicit:
                    raise ValueError(f"LIVELEARN_BASIS_GROUPS: {symbol} is in two groups")
                explicit[symbol] = name.strip()
        return cls("explicit", explicit)

    @property
    def mode(self) -> str:
        return self._mode

    def key(self, symbol: str) -> str:
        """The symbol's group: its Kafka key for ticks and feedback."""
        if self._mode == "off":
            return symbol
        if self._mode == "explicit":
            return self._explicit.get(symbol, symbol)
        return base_asset(symbol)

    @staticmethod
    def preference(symbol: str) -> int:
        """Rank of the symbol's quote asset as a reference (lower is preferred)."""
        bare = _CONTRACT.sub("", symbol.upper())
        for rank, quote in enumerate(QUOTES):
            if bare.endswith(quote) and len(bare) > len(quote):
                return rank
        return len(QUOTES)


def base_asset(symbol: str) -> str:
    """The symbol without its dollar quote asset (the longest known suffix) and contract suffix; the
    symbol itself when it has none."""
    bare = _CONTRACT.sub("", symbol.upper())
    for quote in sorted(QUOTES, key=len, reverse=True):
        if bare.endswith(quote) and len(bare) > len(quote):
            return bare[: -len(quote)]
    return symbol


def kafka_partition(key: bytes, count: int) -> int:
    """The partition of ``count`` that Kafka's default partitioner gives a keyed record: murmur2, as the
    Java client and aiokafka (Faust) compute it and librdkafka with ``partitioner=murmur2_random``, the
    partitioner every producer here sets. Which partition holds a group depends on ``count``, so growing
    the input topics moves groups (agents.pipeline says which, at a restore).

    >>> kafka_partition(b"BTC", 2), kafka_partition(b"BTC", 3), kafka_partition(b"ETH", 3)
    (0, 1, 1)
    """
    from aiokafka.partitioner import murmur2

    if count < 1:
        raise ValueError(f"a topic has at least one partition, not {count}")
    return (murmur2(key) & 0x7FFFFFFF) % count
