"""The identity graph functions: connected components by large-star / small-star + finish, guards and persons."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipelines.identity.graph import (both_ways, connected, downward, finish, guard, large_star, persons, resolve,
                                      settle, small_star)
from pipelines.identity.identifiers import LINK_SCHEMA, hash_of, person_ids
from pipelines.identity.settings import IdentitySettings


def reference_components(a, b) -> dict[int, int]:
    nodes, index = np.unique(np.r_[a, b], return_inverse=True)
    graph = coo_matrix((np.ones(len(a)), (index[:len(a)], index[len(a):])), shape=(len(nodes), len(nodes)))
    _, component = connected_components(graph, directed=False)
    smallest = {}
    for node, c in zip(nodes.tolist(), component.tolist()):
        smallest[c] = min(smallest.get(c, node), node)
    return {node: smallest[c] for node, c in zip(nodes.tolist(), component.tolist())}


def test_large_and_small_star_follow_the_paper_on_a_path():
    a, b = np.array([1, 2, 3]), np.array([2, 3, 4])
    assert [x.tolist() for x in large_star(*both_ways(a, b))] == [[2, 3, 4], [1, 1, 2]]
    # small-star on (2-1, 3-1, 4-2): node 4's smaller neighbour 2 -> (4, 2); nodes 2, 3 -> 1
    assert [x.tolist() for x in small_star(*downward(np.array([2, 3, 4]), np.array([1, 1, 2])))] == [[2, 3, 4], [1, 1, 2]]


@pytest.mark.parametrize("rounds", [0, 1, 2, 4])
def test_components_equal_scipy_on_random_graphs_for_any_number_of_rounds(rounds):
    rng = np.random.default_rng(rounds)
    for _ in range(40):
        n = int(rng.integers(2, 60))
        m = int(rng.integers(1, 80))
        nodes = rng.integers(-2**62, 2**62, n)
        a, b = nodes[rng.integers(0, n, m)], nodes[rng.integers(0, n, m)]
        keep = a != b
        if not keep.any():
            continue
        assert connected(a[keep], b[keep], rounds) == reference_components(a[keep], b[keep])


def test_a_long_chain_needs_the_finish_after_few_rounds_and_is_one_component():
    a, b = np.arange(0, 200), np.arange(1, 201)
    nodes, labels, left = settle(*both_ways(a, b))  # no rounds: every inner node is unsettled
    assert len(left[0]) == 2 * 199 and set(labels.tolist()) != {0}
    assert set(connected(a, b, 1).values()) == {0}


def test_settled_stars_leave_nothing_for_the_finish():
    a, b = np.array([5, 6, 7, 9]), np.array([1, 1, 1, 8])  # stars around 1 and 8
    nodes, labels, (left_a, left_b) = settle(*both_ways(a, b))
    assert dict(zip(nodes.tolist(), labels.tolist())) == {1: 1, 5: 1, 6: 1, 7: 1, 8: 8, 9: 8}
    assert len(left_a) == 0
    assert resolve(labels, *finish(left_a, left_b)).tolist() == labels.tolist()


def links(rows):
    return pa.Table.from_pylist([dict(zip(LINK_SCHEMA.names, r)) for r in rows], schema=LINK_SCHEMA)


def test_guard_drops_an_identifier_seen_with_more_customers_than_its_type_allows():
    settings = IdentitySettings(types={"device_id": {"max_customers": 2}})
    table = links([(1, 100, "phone", "2026-10-02"), (2, 100, "phone", "2026-10-01"), (3, 100, "phone", "2026-10-03"),
                   (1, 200, "device_id", "2026-10-01"), (2, 200, "device_id", "2026-10-01"),
                   (3, 200, "device_id", "2026-10-01"), (3, 200, "device_id", "2026-10-02")])
    edges, nodes, conflicts = guard(table, settings)
    assert sorted(zip(*[edges.column(c).to_pylist() for c in ("customer_node", "node")])) == [(1, 100), (2, 100), (3, 100)]
    assert conflicts.to_pylist() == [{"kind": "shared_identifier", "identifier_type": "device_id",
                                      "identifier_hash": hash_of(np.array([200]))[0].as_py(), "person_id": None,
                                      "customers": 3, "identifiers": None, "limit": 2}]
    assert sorted(nodes.to_pylist(), key=lambda r: r["node"]) == [
        {"node": 1, "identifier_type": "customer_id", "first_seen": "2026-10-02"},
        {"node": 2, "identifier_type": "customer_id", "first_seen": "2026-10-01"},
        {"node": 3, "identifier_type": "customer_id", "first_seen": "2026-10-03"},
        {"node": 100, "identifier_type": "phone", "first_seen": "2026-10-01"}]


def test_a_type_that_does_not_link_is_ignored():
    edges, nodes, conflicts = guard(links([(1, 100, "loyalty", "2026-10-01"), (2, 100, "loyalty", "2026-10-01")]),
                                    IdentitySettings(types={"loyalty": {"link": False}}))
    assert edges.num_rows == nodes.num_rows == conflicts.num_rows == 0


def node_table(rows):
    return pa.Table.from_pylist([dict(zip(["node", "identifier_type", "first_seen", "component"], r)) for r in rows])


def test_a_person_is_anchored_at_its_smallest_customer_node():
    mapped, conflicts = persons(node_table([(-5, "phone", "2026-10-01", -5), (3, "customer_id", "2026-10-01", -5),
                                            (7, "customer_id", "2026-10-02", -5)]), IdentitySettings())
    assert mapped.column("person_id").to_pylist() == person_ids(np.array([3, 3, 3])).to_pylist()
    assert conflicts.num_rows == 0


def test_a_person_over_the_cap_is_not_merged_and_is_reported():
    rows = [(10 + i, "customer_id", "2026-10-01", 1) for i in range(2)] + [(1, "device_id", "2026-10-01", 1),
                                                                          (2, "phone", "2026-10-01", 1)]
    mapped, conflicts = persons(node_table(rows), IdentitySettings(max_identifiers=3))
    assert mapped.select(["node", "person_id"]).to_pylist() == [
        {"node": 10, "person_id": person_ids(np.array([10]))[0].as_py()},
        {"node": 11, "person_id": person_ids(np.array([11]))[0].as_py()}]
    assert conflicts.to_pylist() == [{"kind": "person_cap", "identifier_type": None, "identifier_hash": None,
                                      "person_id": person_ids(np.array([10]))[0].as_py(), "customers": 2,
                                      "identifiers": 4, "limit": 3}]
