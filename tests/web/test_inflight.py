"""The in-flight table keeps what the OrderedDict it replaced kept, in the same order: a
start makes a (session, tab) the newest, a Stop's read does not, the oldest goes first."""

from __future__ import annotations

import random
from collections import OrderedDict

import pytest

from playground.web.inflight import Flight, InFlight


class Reference:
    """The table as it was (an OrderedDict trimmed from the oldest end)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.flights: OrderedDict[tuple[str, str], Flight] = OrderedDict()

    def start(self, session: str | None, tab: str, flight: Flight) -> None:
        if session is not None:
            self.flights[(session, tab)] = flight
            self.flights.move_to_end((session, tab))
            while len(self.flights) > self.size:
                self.flights.popitem(last=False)

    def get(self, session: str | None, tab: str) -> Flight | None:
        return self.flights.get((session, tab)) if session is not None else None


@pytest.mark.parametrize("seed", range(20))
def test_same_flights_kept_as_the_ordereddict(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.choice([1, 2, 3, 8])
    table, reference = InFlight(size), Reference(size)
    sessions = [None, *(f"s{i}" for i in range(12))]
    for _ in range(400):
        session, tab = rng.choice(sessions), rng.choice(["json", "regex", "batch"])
        if rng.random() < 0.5:
            reference.start(session, tab, table.start(session, tab))
        else:
            assert table.get(session, tab) is reference.get(session, tab)
    for session in sessions:
        for tab in ["json", "regex", "batch"]:
            assert table.get(session, tab) is reference.get(session, tab)


def test_a_stop_reading_a_flight_does_not_keep_it_longer() -> None:
    table = InFlight(2)
    first = table.start("a", "json")
    table.start("b", "json")
    assert table.get("a", "json") is first  # read by Stop: still the oldest
    table.start("c", "json")
    assert table.get("a", "json") is None
    assert table.get("b", "json") is not None and table.get("c", "json") is not None


def test_no_session_no_entry() -> None:
    table = InFlight(1)
    assert isinstance(table.start(None, "json"), Flight)
    assert table.get(None, "json") is None

