"""Which GPU each model without ``gpu:`` goes to. Pure and deterministic.

First-fit decreasing: the models are taken largest need first (ties broken by
name), and each takes the first card with room for it. "First" is in the
model's own fixed order of the cards -- rendezvous hashing of its name and the
card index -- rather than index order, for two reasons:

- stability: a model added to the stack lands on the first card of *its* order
  with room, so it can only displace smaller models on that one card; with a
  shared index order every later model would shift one card along;
- spreading: models spread over the cards instead of piling onto GPU 0, which
  keeps each GPU's boot chain short (chains boot in parallel) and leaves each
  model more of its card's compute.

A model wants the share that holds ``max_num_seqs`` full-length sequences;
when no card has that, it takes a card with room for its minimum (one
full-length sequence), and the auto split on that card shares out what is left.
Pinned models (``gpu:`` given) are never moved; their minimum is taken out of
their cards first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gpustack_compose import calibration as cal
from gpustack_compose.errors import PlanError
from gpustack_compose.units import fmt_gib


@dataclass(frozen=True)
class Card:
    index: int
    total_bytes: int
    reserve_bytes: int


@dataclass(frozen=True)
class Demand:
    """What one model asks of a card. Exactly one of ``fraction``,
    ``size_bytes`` or the auto pair (``target_bytes``, ``floor_bytes``) decides
    its share; ``outside_bytes`` (CUDA context, graphs) comes on top."""

    name: str
    path: tuple[str | int, ...]  # its stack field: ("models", 3)
    pinned: tuple[int, ...]
    outside_bytes: int
    fraction: float | None = None
    size_bytes: int | None = None
    target_bytes: int = 0
    floor_bytes: int = 0

    def wants(self, total_bytes: int) -> int:
        if self.fraction is not None:
            return cal.requested_bytes(self.fraction, total_bytes) + self.outside_bytes
        if self.size_bytes is not None:
            return self.size_bytes + self.outside_bytes
        return self.target_bytes + self.outside_bytes

    def needs(self, total_bytes: int) -> int:
        if self.fraction is None and self.size_bytes is None:
            return self.floor_bytes + self.outside_bytes
        return self.wants(total_bytes)

    def describe_need(self, total_bytes: int) -> str:
        if self.fraction is not None:
            return f"fraction {self.fraction:g} of {fmt_gib(total_bytes)} plus its CUDA context"
        if self.size_bytes is not None:
            return f"memory {fmt_gib(self.size_bytes)} plus its CUDA context"
        return "weights, activation peak, one max_model_len sequence of KV cache and its CUDA context"


def card_order(name: str, cards: Sequence[Card]) -> list[Card]:
    """The model's own fixed preference over the cards (rendezvous hashing):
    adding or removing a card only changes where that card sits in it."""

    def score(card: Card) -> bytes:
        return hashlib.sha256(f"{name}\0{card.index}".encode()).digest()

    return sorted(cards, key=score)


def place(demands: Sequence[Demand], cards: Sequence[Card]) -> dict[str, tuple[int, ...]]:
    """The cards of every model. Raises PlanError when a model fits nowhere."""
    if len(cards) == 1:
        return {d.name: d.pinned or (cards[0].index,) for d in demands}
    by_index = {c.index: c for c in cards}
    used = {c.index: c.reserve_bytes for c in cards}
    out: dict[str, tuple[int, ...]] = {}
    for demand in demands:
        if demand.pinned:
            out[demand.name] = demand.pinned
            for index in demand.pinned:
                used[index] += demand.needs(by_index[index].total_bytes)
    reference = max(c.total_bytes for c in cards)
    movable = sorted((d for d in demands if not d.pinned), key=lambda d: (-d.wants(reference), d.name))
    placed_before: list[str] = []
    for demand in movable:
        order = card_order(demand.name, cards)
        chosen = _first_fit(order, used, demand.wants) or _first_fit(order, used, demand.needs)
        if chosen is None:
            raise PlanError(_no_fit(demand, cards, used, placed_before), path=demand.path)
        card, taken = chosen
        used[card.index] += taken
        out[demand.name] = (card.index,)
        placed_before.append(demand.name)
    return out


def _first_fit(order: Sequence[Card], used: dict[int, int], amount: Callable[[int], int]) -> tuple[Card, int] | None:
    for card in order:
        size = amount(card.total_bytes)
        if card.total_bytes - used[card.index] >= size:
            return card, size
    return None


def _no_fit(demand: Demand, cards: Sequence[Card], used: dict[int, int], placed: list[str]) -> str:
    best = max(cards, key=lambda c: (c.total_bytes - used[c.index], -c.index))
    free = max(0, best.total_bytes - used[best.index])
    need = demand.needs(best.total_bytes)
    after = f", after placing {len(placed)} larger model{'s' if len(placed) != 1 else ''}" if placed else ""
    return (
        f"{demand.name!r}: no GPU has room for it: it needs {fmt_gib(need)} "
        f"({demand.describe_need(best.total_bytes)}) but the largest free space on any GPU is "
        f"{fmt_gib(free)} (GPU {best.index}{after}); add a GPU, lower its memory or max_model_len, "
        "or spread it over cards with gpu: [i, j]"
    )
