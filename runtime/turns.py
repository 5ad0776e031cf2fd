"""Taking turns: the order in which several parties are served, so that none is always served first or last.

Whoever goes first in a round is served under other conditions than whoever goes last (a camera's frame waits
less; a timed model inherits less of the previous one's caches and thread state, and the machine's drift falls
on it earlier). Taking turns spreads that evenly. The benchmarks time the paths they compare with ``in_turn``
(the same parties every round); ``dannet-run`` serves several cameras with ``Turns`` (whichever cameras have a
frame in a step).
"""
from __future__ import annotations

from typing import Collection, Generic, Iterable, Sequence, TypeVar

T = TypeVar("T")


def in_turn(parties: Sequence[T], round_: int) -> list[T]:
    """``parties`` in the order of round ``round_``: the first one of round 0 first, rotated by one per round.
    Only for the same parties in every round: rotating a list whose members change from round to round by a
    count of rounds can hand one party the same place whenever it is there (``Turns`` is for that)."""
    turn = round_ % len(parties)
    return [*parties[turn:], *parties[:turn]]


class Turns(Generic[T]):
    """Turns among parties that are not all there every round (cameras delivering at different rates): those
    present are served in the order of who went first least recently, and whoever goes first in a round goes to
    the back of the line. A party alone in a round is served ahead of no one, so it uses no turn."""

    def __init__(self, parties: Iterable[T]) -> None:
        self.line: list[T] = list(parties)  # who went first least recently, first

    def next_round(self, present: Collection[T]) -> list[T]:
        """The order in which to serve ``present`` (some of the parties) this round."""
        order = [party for party in self.line if party in present]
        if len(order) != len(present):
            raise ValueError(f"{present!r}: expected some of the parties {self.line!r}")
        if len(order) > 1:
            self.line.remove(order[0])
            self.line.append(order[0])
        return order
