"""Identifier normalisation, keyed hashing and the links of validated rows."""
from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest

from pipelines.identity.identifiers import (customer_nodes, identifier_hash, node_of, normalise, row_links)
from pipelines.identity.settings import IdentitySettings


@pytest.mark.parametrize("kind, value, expected", [
    ("phone", "+86 137 0629 0800", "+8613706290800"),
    ("phone", "137-0629-0800", "+8613706290800"),
    ("phone", "0086 13706290800", "+8613706290800"),
    ("phone", "+44 20 7946 0958", "+442079460958"),
    ("phone", "12345", None),
    ("email", " Ann.Lee@Example.COM ", "ann.lee@example.com"),
    ("email", "not-an-email", None),
    ("compact", "6222-01 77.3", "622201773"),
    ("compact", " - ", None),
    ("text", " d-7781 ", "d-7781"),
])
def test_values_are_normalised_per_kind(kind, value, expected):
    assert normalise(kind, value, "CN") == expected


def test_hashes_are_keyed_and_the_node_is_the_hash():
    one, other = identifier_hash("phone", "+8613706290800", b"k1"), identifier_hash("phone", "+8613706290800", b"k2")
    assert one != other and len(one) == 16 and "13706290800" not in one
    assert identifier_hash("email", "+8613706290800", b"k1") != one  # the type is part of the hash
    assert format(node_of(one) & (2**64 - 1), "016x") == one


def test_links_of_rows_hash_normalised_values_and_count_invalid_ones():
    table = pa.table({"customer_id": ["c1", "c2", "c1", "c3"],
                      "identifiers": ['{"phone": "+86 137 0629 0800"}', '{"phone": "13706290800", "email": "x"}',
                                      '{"phone": "+86 137 0629 0800"}', None],
                      "dt": ["2026-10-01", "2026-10-01", "2026-10-01", "2026-10-01"]})
    counts = Counter()
    links = row_links(table, IdentitySettings(), b"k", counts)
    phone = node_of(identifier_hash("phone", "+8613706290800", b"k"))
    c1, c2 = customer_nodes(pa.array(["c1", "c2"]), b"k")
    assert sorted(links.to_pylist(), key=lambda r: r["customer_node"]) == sorted([
        {"customer_node": int(c1), "node": phone, "identifier_type": "phone", "dt": "2026-10-01"},
        {"customer_node": int(c2), "node": phone, "identifier_type": "phone", "dt": "2026-10-01"}],
        key=lambda r: r["customer_node"])
    assert counts == Counter({"identity.invalid.email": 1})


def test_playbook_entries_override_only_the_keys_they_give():
    settings = IdentitySettings.model_validate({"types": {"phone": {"max_customers": 2}, "loyalty_no": {"normalise": "compact"}}})
    assert settings.type("phone").normalise == "phone" and settings.type("phone").max_customers == 2
    assert settings.type("loyalty_no").max_customers == 3
    with pytest.raises(ValueError, match="customer_id is always"):
        IdentitySettings.model_validate({"types": {"customer_id": {"max_customers": 2}}})
