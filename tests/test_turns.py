"""Taking turns (runtime/turns.py): with the same parties every round (``in_turn``, the benchmarks) and with
parties present in some rounds only (``Turns``, cameras delivering at different rates).

The reference is the property itself, counted over many rounds: no party is kept from going first in the rounds
it shares with others."""
from __future__ import annotations

from collections import Counter
from typing import Callable

import pytest

from runtime.turns import Turns, in_turn


def test_in_turn_rotates_the_same_parties_one_place_per_round() -> None:
    """Over N rounds each of N parties is first once, and every round serves every party."""
    parties = ["a", "b", "c"]
    orders = [in_turn(parties, round_) for round_ in range(3)]
    assert sorted(order[0] for order in orders) == parties
    assert all(sorted(order) == parties for order in orders)


#: which of the cameras have a frame in step ``s``: the reviewer's patterns (tests' own, not from runtime code)
PATTERNS: dict[str, tuple[int, Callable[[int], list[int]]]] = {
    "30 and 15 fps": (2, lambda s: [0, 1] if s % 2 == 0 else [0]),
    "30 and 15 fps, the other phase": (2, lambda s: [0, 1] if s % 2 == 1 else [0]),
    "3 cameras, one at half rate": (3, lambda s: [0, 1, 2] if s % 2 == 0 else [0, 1]),
    "3 cameras at 30, 15 and 10 fps": (3, lambda s: [c for c, period in enumerate((1, 2, 3)) if s % period == 0]),
}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_cameras_at_different_rates_each_go_first_in_their_share_of_the_steps(pattern: str) -> None:
    """Of the steps a camera shares with others, it goes first in at least 1/N (N cameras): with a rotation
    counted in steps, the 30 fps camera of the first pattern went first in all of them; and each step serves
    exactly the cameras present."""
    cameras, present = PATTERNS[pattern]
    turns = Turns(range(cameras))
    shared, first = Counter(), Counter()
    for step in range(600):
        order = turns.next_round(present(step))
        assert sorted(order) == present(step)
        if len(order) > 1:
            shared.update(order)
            first[order[0]] += 1
    for camera in range(cameras):
        assert first[camera] >= shared[camera] / cameras, (pattern, dict(first), dict(shared))


def test_two_cameras_sharing_steps_alternate_exactly() -> None:
    """Two cameras: in the steps they share, first goes to each in turn, whatever the steps between them."""
    turns = Turns([0, 1])
    firsts = []
    for present in ([0, 1], [0], [0], [0, 1], [1], [0, 1], [0, 1], [0], [0, 1]):
        order = turns.next_round(present)
        if len(order) == 2:
            firsts.append(order[0])
    assert firsts == [0, 1, 0, 1, 0]


def test_a_party_that_is_not_one_of_them_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected some of the parties"):
        Turns([0, 1]).next_round([0, 2])
