"""Taking turns: the order in which several parties are served, rotated by one per round.

Whoever goes first in a round is served under other conditions than whoever goes last (a camera's frame waits
less; a timed model inherits less of the previous one's caches and thread state, and the machine's drift falls
on it earlier). Rotating the order every round spreads that evenly: ``dannet-run`` serves several cameras this
way, and the benchmarks time the paths they compare this way.
"""
from __future__ import annotations

from typing import Sequence, TypeVar

T = TypeVar("T")


def in_turn(parties: Sequence[T], round_: int) -> list[T]:
    """``parties`` in the order of round ``round_``: the first one of round 0 first, rotated by one per round."""
    turn = round_ % len(parties)
    return [*parties[turn:], *parties[:turn]]
