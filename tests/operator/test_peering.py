"""The peering rule the reconciler's gate applies (``operator.peering.stronger_peers``): the same as
Kopf's — stand by while another live peer's priority is at least ours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from market_spine.operator.peering import stronger_peers

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def peer(priority: int, seen_ago: float = 1.0, lifetime: int = 60) -> dict[str, object]:
    return {"priority": priority, "lifetime": lifetime, "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat()}


def test_alone_or_strongest_acts() -> None:
    assert stronger_peers({}, "a", 100, NOW) == []
    assert stronger_peers({"a": peer(100)}, "a", 100, NOW) == []  # ourselves
    assert stronger_peers({"a": peer(100), "b": peer(50)}, "a", 100, NOW) == []


def test_a_live_stronger_or_equal_peer_holds_the_peering() -> None:
    assert stronger_peers({"a": peer(100), "b": peer(200)}, "a", 100, NOW) == ["b"]
    # Equal priorities: Kopf pauses every one of them, and so does the gate.
    assert stronger_peers({"a": peer(100), "b": peer(100), "c": peer(300)}, "a", 100, NOW) == ["b", "c"]


def test_dead_and_leaving_peers_do_not_count() -> None:
    assert stronger_peers({"b": peer(200, seen_ago=61)}, "a", 100, NOW) == []  # lifetime over
    assert stronger_peers({"b": peer(200, lifetime=0)}, "a", 100, NOW) == []  # said goodbye (SIGTERM)
    assert stronger_peers({"b": None, "c": {"priority": 900}}, "a", 100, NOW) == []  # removed; never seen
