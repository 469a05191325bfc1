"""Preferred allocation: mustInclude, NUMA, packed and spread, determinism."""

from __future__ import annotations

import random

from sriovkit.deviceplugin.preferred import Placement, preferred_allocation
from sriovkit.resources.config import AllocatePolicy

PACKED, SPREAD = AllocatePolicy.PACKED, AllocatePolicy.SPREAD


def layout(spec):
    """spec: {(numa, pf): count} -> placements with ids 'pf-i'."""
    placements = {}
    for (numa, pf), count in spec.items():
        for i in range(count):
            placements[f"{pf}-{i}"] = Placement(numa, pf)
    return placements


def test_must_include_comes_first_and_is_kept():
    p = layout({(0, "a"): 3, (0, "b"): 3})
    got = preferred_allocation(sorted(p), ["b-2"], 2, p)
    assert got[0] == "b-2" and len(got) == 2
    assert preferred_allocation(sorted(p), ["b-2", "a-0"], 2, p) == ["b-2", "a-0"]


def test_packed_fills_one_pf_first():
    p = layout({(0, "a"): 4, (0, "b"): 2})
    got = preferred_allocation(sorted(p), [], 2, p, PACKED)
    assert {p[d].pf for d in got} == {"b"}  # the fuller PF (fewest free) is used up first
    got = preferred_allocation(sorted(p), [], 3, p, PACKED)
    assert {p[d].pf for d in got} == {"a"}  # only a holds all 3: one PF rather than two


def test_packed_prefers_a_pf_that_holds_the_whole_request_over_a_fuller_one():
    p = layout({(0, "a"): 1, (0, "b"): 2, (0, "c"): 5})
    got = preferred_allocation(sorted(p), [], 2, p, PACKED)
    assert {p[d].pf for d in got} == {"b"}


def test_packed_with_no_pf_big_enough_uses_the_fullest_first():
    p = layout({(0, "a"): 1, (0, "b"): 2, (0, "c"): 2})
    got = preferred_allocation(sorted(p), [], 4, p, PACKED)
    assert sorted(p[d].pf for d in got) == ["a", "b", "b", "c"]


def test_spread_balances_over_pfs():
    p = layout({(0, "a"): 4, (0, "b"): 4, (0, "c"): 4})
    got = preferred_allocation(sorted(p), [], 3, p, SPREAD)
    assert sorted(p[d].pf for d in got) == ["a", "b", "c"]
    got = preferred_allocation(sorted(p), [], 6, p, SPREAD)
    assert sorted(p[d].pf for d in got) == ["a", "a", "b", "b", "c", "c"]


def test_packed_continues_on_the_pf_of_must_include():
    p = layout({(0, "a"): 4, (0, "b"): 2})
    got = preferred_allocation(sorted(p), ["a-3"], 3, p, PACKED)
    assert {p[d].pf for d in got} == {"a"}


def test_prefers_one_numa_node_that_fits():
    p = layout({(0, "a"): 1, (1, "b"): 3})
    got = preferred_allocation(sorted(p), [], 2, p, PACKED)
    assert {p[d].numa_node for d in got} == {1}


def test_numa_of_must_include_wins():
    p = layout({(0, "a"): 4, (1, "b"): 4})
    got = preferred_allocation(sorted(p), ["a-0"], 3, p, SPREAD)
    assert {p[d].numa_node for d in got} == {0}


def test_spills_to_another_numa_node_when_one_is_not_enough():
    p = layout({(0, "a"): 2, (1, "b"): 2})
    got = preferred_allocation(sorted(p), [], 3, p, PACKED)
    assert len(got) == 3 and len(set(got)) == 3


def test_only_available_devices_and_unknown_ones_last():
    p = layout({(0, "a"): 4})
    available = ["a-1", "a-3", "zz-unknown"]
    got = preferred_allocation(available, [], 3, p)
    assert got[:2] == ["a-1", "a-3"] and got[2] == "zz-unknown"


def test_unknown_numa_is_allowed():
    p = layout({(None, "a"): 2})
    assert sorted(preferred_allocation(sorted(p), [], 2, p)) == ["a-0", "a-1"]


def test_deterministic_regardless_of_input_order():
    p = layout({(0, "a"): 5, (0, "b"): 3, (1, "c"): 4})
    ids = sorted(p)
    expected = preferred_allocation(ids, [], 4, p, SPREAD)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = ids[:]
        rng.shuffle(shuffled)
        assert preferred_allocation(shuffled, [], 4, p, SPREAD) == expected


def test_devices_still_attached_come_after_every_free_one():
    """The kubelet offers a deleted pod's VF again before its sandbox's DEL came: an ADD on it
    would fail 'already attached' and the pod start only after the kubelet's backoff."""
    p = layout({(0, "a"): 4})
    assert preferred_allocation(sorted(p), [], 1, p, PACKED, held={"a-0"}) == ["a-1"]
    assert preferred_allocation(sorted(p), [], 2, p, SPREAD, held={"a-0", "a-1"}) == ["a-2", "a-3"]
    # only when the free ones do not suffice, and still before devices the pool does not know
    got = preferred_allocation(["a-0", "a-1", "zz-unknown"], [], 3, p, PACKED, held={"a-0"})
    assert got == ["a-1", "a-0", "zz-unknown"]
    assert preferred_allocation(sorted(p), ["a-0"], 1, p, PACKED, held={"a-0"}) == ["a-0"]  # must-include wins


def test_held_devices_keep_the_packed_choice_among_the_free_ones():
    p = layout({(0, "a"): 2, (0, "b"): 3})
    got = preferred_allocation(sorted(p), [], 2, p, PACKED, held={"a-0"})
    assert {p[d].pf for d in got} == {"b"}  # a has only one free VF left: b holds the whole request
