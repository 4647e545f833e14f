"""The identity graph as plain functions on numpy arrays of one hash bucket (the Beam steps call them).

Nodes are signed 64-bit identifier hashes (`identifiers.node_of`); an edge links a customer id to an identifier
seen on one of its rows. Connected components are found with the large-star / small-star rounds of Kiveris et al.,
"Connected Components in MapReduce and Beyond" (SoCC 2014): every round is one grouping by node, so a bucket holds
only the edges of its nodes, never the whole graph. After a fixed number of rounds `settle` labels every node with
the smallest of itself and its neighbours; a component whose edges are not yet one star around its smallest node
sends the edges of its unsettled nodes to `finish` (scipy's connected components on those edges only), and
`resolve` applies that result to every label. The label of a component is then its smallest node, whatever the
bucketing, so the persons are the same on every runner and every number of buckets.

    >>> u, v = np.array([1, 2, 3]), np.array([2, 3, 4])   # a path 1-2-3-4
    >>> large_star(*both_ways(u, v))
    (array([2, 3, 4]), array([1, 1, 2]))
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipelines.identity.identifiers import hash_of, person_ids
from pipelines.identity.settings import CUSTOMER_TYPE, IdentitySettings


def _starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Where each run of equal values of a sorted array starts."""
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) if len(sorted_keys) else np.zeros(0, int)


def unique_edges(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (a, b) pairs, sorted."""
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    keep = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])] if len(a) else np.zeros(0, bool)
    return a[keep], b[keep]


def both_ways(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each undirected edge as (a, b) and (b, a): every node's neighbours, for `large_star` and `settle`."""
    return unique_edges(np.r_[a, b], np.r_[b, a])


def downward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each undirected edge as (larger, smaller) node, for `small_star`."""
    return unique_edges(np.maximum(a, b), np.minimum(a, b))


def _group_min(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by (u, v) -> per row: the smallest v of its u, and where each u starts."""
    starts = _starts(u)
    smallest = np.minimum.reduceat(v, starts) if len(u) else np.zeros(0, np.int64)
    return np.repeat(smallest, np.diff(np.r_[starts, len(u)])), starts


def large_star(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (u, v): v is a neighbour of u, all neighbours of each u present. Links every larger neighbour of u
    to m(u), the smallest of u and its neighbours: edges (v, m(u)) for v > u."""
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    smallest, _ = _group_min(u, v)
    m = np.minimum(smallest, u)
    keep = v > u
    return unique_edges(v[keep], m[keep])


def small_star(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (u, v) with v < u, all smaller neighbours of each u present. Links u and its smaller neighbours to the
    smallest of them, m: edges (v, m) for each such v other than m, and (u, m)."""
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    m, starts = _group_min(u, v)
    others = v != m
    return unique_edges(np.r_[v[others], u[starts]], np.r_[m[others], m[starts]])


def settle(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Rows (u, v) of all neighbours of each u -> (nodes, their labels, edges of unsettled nodes).

    The label is the smallest of the node and its neighbours. A node is settled when it has no smaller
    neighbour (a star's centre) or exactly one neighbour, a smaller one (a leaf); a graph of settled nodes only
    is a set of stars around their smallest nodes, so the labels are the components already."""
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    smallest, starts = _group_min(u, v)
    degree = np.repeat(np.diff(np.r_[starts, len(u)]), np.diff(np.r_[starts, len(u)]))
    unsettled = (smallest < u) & (degree >= 2)
    return u[starts], np.minimum(smallest, u)[starts], (u[unsettled], v[unsettled])


def finish(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the edges that `settle` left (a small graph): (nodes sorted, smallest node of each
    one's component)."""
    nodes, index = np.unique(np.r_[a, b], return_inverse=True)
    if len(nodes) == 0:
        return nodes, nodes
    n = len(nodes)
    graph = coo_matrix((np.ones(len(a), np.int8), (index[:len(a)], index[len(a):])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    smallest = np.full(component.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(smallest, component, nodes)
    return nodes, smallest[component]


def resolve(labels: np.ndarray, nodes: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """Each label replaced by its root where `finish` found one (`nodes` sorted), else kept."""
    if len(nodes) == 0:
        return labels
    position = np.minimum(np.searchsorted(nodes, labels), len(nodes) - 1)
    return np.where(nodes[position] == labels, roots[position], labels)


def connected(a: np.ndarray, b: np.ndarray, rounds: int) -> dict[int, int]:
    """Node -> component label of a whole graph in one process, by the same steps as the pipeline (for tests and
    the benchmark's check)."""
    for _ in range(rounds):
        a, b = large_star(*both_ways(a, b))
        a, b = small_star(*downward(a, b))
    nodes, labels, left = settle(*both_ways(a, b))
    return dict(zip(nodes.tolist(), resolve(labels, *finish(*left)).tolist()))


# --- guards and persons --------------------------------------------------------------------------------------------


def guard(links: pa.Table, settings: IdentitySettings) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Links (customer_node, node, identifier_type, dt) of one bucket of identifier nodes, all days ->
    (edges customer_node - node that may link, nodes: node, identifier_type, first_seen, conflicts).

    An identifier of a type with `link: false`, or seen with more distinct customer ids than its type's
    `max_customers`, links nothing; the latter is a `shared_identifier` conflict with its count."""
    distinct = links.group_by(["node", "identifier_type", "customer_node"], use_threads=False).aggregate([("dt", "min")])
    per_node = distinct.group_by(["node", "identifier_type"], use_threads=False).aggregate(
        [("customer_node", "count"), ("dt_min", "min")])
    types = per_node.column("identifier_type").to_pylist()
    limits = np.array([settings.type(t).max_customers for t in types], np.int64)
    linking = np.array([settings.type(t).link for t in types], bool)
    customers = per_node.column("customer_node_count").to_numpy()
    shared = linking & (customers > limits)
    trusted = pa.array(linking & ~shared)
    kept = per_node.filter(trusted).select(["node"])
    edges = distinct.join(kept, "node", join_type="inner").select(["customer_node", "node"])
    shared_rows = per_node.filter(pa.array(shared))
    conflicts = pa.table({
        "kind": pa.repeat(pa.scalar("shared_identifier"), shared_rows.num_rows),
        "identifier_type": shared_rows.column("identifier_type"),
        "identifier_hash": hash_of(shared_rows.column("node").to_numpy()),
        "person_id": pa.nulls(shared_rows.num_rows, pa.string()),
        "customers": shared_rows.column("customer_node_count"),
        "identifiers": pa.nulls(shared_rows.num_rows, pa.int64()),
        "limit": pa.array(limits[shared]),
    })
    linked = distinct.join(kept, "node", join_type="inner")
    identifier_nodes = per_node.filter(trusted).select(["node", "identifier_type", "dt_min_min"])
    customer_nodes = linked.group_by("customer_node", use_threads=False).aggregate([("dt_min", "min")])
    nodes = pa.concat_tables([
        pa.table({"node": identifier_nodes.column("node"), "identifier_type": identifier_nodes.column("identifier_type"),
                  "first_seen": identifier_nodes.column("dt_min_min")}),
        pa.table({"node": customer_nodes.column("customer_node"),
                  "identifier_type": pa.repeat(pa.scalar(CUSTOMER_TYPE), customer_nodes.num_rows),
                  "first_seen": customer_nodes.column("dt_min_min")}),
    ])
    return edges, nodes, conflicts


def persons(nodes: pa.Table, settings: IdentitySettings) -> tuple[pa.Table, pa.Table]:
    """Nodes (node, identifier_type, first_seen, component) of whole components -> (their persons: node,
    identifier_type, first_seen, person_id; conflicts).

    A person is anchored at its smallest customer node: person_id = `p_` + that node's hash. A component with more
    than `max_identifiers` nodes is not merged (a `person_cap` conflict): each of its customer ids stays a person
    of its own and its other identifiers get no person."""
    nodes = nodes.sort_by([("component", "ascending"), ("node", "ascending")])
    component = nodes.column("component").to_numpy()
    node = nodes.column("node").to_numpy()
    is_customer = (nodes.column("identifier_type").to_numpy(zero_copy_only=False) == CUSTOMER_TYPE)
    starts = _starts(component)
    sizes = np.diff(np.r_[starts, len(component)])
    anchor_of = np.where(is_customer, node, np.iinfo(np.int64).max)
    anchors = np.minimum.reduceat(anchor_of, starts) if len(node) else np.zeros(0, np.int64)
    customers = np.add.reduceat(is_customer.astype(np.int64), starts) if len(node) else np.zeros(0, np.int64)
    capped = sizes > settings.max_identifiers
    row_capped = np.repeat(capped, sizes)
    person_anchor = np.where(row_capped, node, np.repeat(anchors, sizes))
    keep = ~row_capped | is_customer
    mapped = nodes.select(["node", "identifier_type", "first_seen"]).filter(pa.array(keep)).append_column(
        "person_id", person_ids(person_anchor[keep]))
    conflicts = pa.table({
        "kind": pa.repeat(pa.scalar("person_cap"), int(capped.sum())),
        "identifier_type": pa.nulls(int(capped.sum()), pa.string()),
        "identifier_hash": pa.nulls(int(capped.sum()), pa.string()),
        "person_id": person_ids(anchors[capped]),
        "customers": pa.array(customers[capped]),
        "identifiers": pa.array(sizes[capped].astype(np.int64)),
        "limit": pa.array(np.full(int(capped.sum()), settings.max_identifiers, np.int64)),
    })
    return mapped, conflicts
