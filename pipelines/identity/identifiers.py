"""Identifier values: normalised per type, then known only by a keyed hash (BLAKE2b, 64 bits).

    >>> normalise("phone", "+86 137 0629 0800", "CN"), normalise("phone", "13706290800", "CN")
    ('+8613706290800', '+8613706290800')
    >>> identifier_hash("customer_id", "c1", b"k") == identifier_hash("customer_id", "c1", b"k")
    True

A node of the identity graph is the signed 64-bit integer of that hash, so a hash, a node and a person id
(`p_` + the hash of the person's anchor customer id) convert into each other without a lookup. The key comes
from `--identity-key` (else `--pseudonymize-key`, else the output's own secret key: see docs/identity.md); without the key
a hash cannot be recomputed from a guessed phone number.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.identity.settings import CUSTOMER_TYPE, IdentitySettings, Normalise

_COMPACT_DROP = re.compile(r"[\s\-./]+")
LINK_SCHEMA = pa.schema([("customer_node", pa.int64()), ("node", pa.int64()), ("identifier_type", pa.string()),
                         ("dt", pa.string())])


def normalise(kind: Normalise, value: str, region: str) -> str | None:
    """The canonical form of an identifier value, None when it is not a valid value of its kind."""
    value = value.strip()
    if kind == "phone":
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_valid_number(number):
            return None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if kind == "email":
        value = value.lower()
        local, at, domain = value.rpartition("@")
        return value if at and local and "." in domain else None
    if kind == "compact":
        value = _COMPACT_DROP.sub("", value).upper()
    return value or None


def _key(key: bytes) -> bytes:
    return key if len(key) <= 64 else hashlib.sha256(key).digest()  # BLAKE2b takes keys up to 64 bytes


def identifier_hash(type_name: str, normalised: str, key: bytes) -> str:
    """16 hex digits: the keyed BLAKE2b hash of `type \\x1f value`."""
    data = f"{type_name}\x1f{normalised}".encode("utf-8")
    return hashlib.blake2b(data, key=_key(key), digest_size=8).hexdigest()


def node_of(hash_hex: str) -> int:
    """The graph node (signed int64) of an identifier hash."""
    return int.from_bytes(bytes.fromhex(hash_hex), "big", signed=True)


def hash_of(nodes: np.ndarray) -> pa.Array:
    """The identifier hashes (16 hex digits) of graph nodes."""
    digits = np.asarray(nodes, np.int64).astype(">i8").tobytes().hex()
    return pa.array([digits[i:i + 16] for i in range(0, len(digits), 16)], pa.string())


def nodes_of(hashes: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The graph nodes of identifier hashes (16 hex digits each): `node_of` over an array."""
    return np.frombuffer(bytes.fromhex("".join(hashes.to_pylist())), ">i8").astype(np.int64)


def person_ids(anchors: np.ndarray) -> pa.Array:
    """`p_` + the hash of each anchor node (the smallest customer node of a person)."""
    return pc.binary_join_element_wise("p_", hash_of(anchors), "")


def customer_nodes(customer_ids: pa.Array | pa.ChunkedArray, key: bytes) -> np.ndarray:
    """The node of each customer id (each distinct id hashed once)."""
    encoded = (customer_ids.combine_chunks() if isinstance(customer_ids, pa.ChunkedArray) else customer_ids)
    encoded = encoded.cast(pa.string()).dictionary_encode()
    distinct = np.array([node_of(identifier_hash(CUSTOMER_TYPE, c, key)) for c in encoded.dictionary.to_pylist()],
                        np.int64)
    return distinct[encoded.indices.to_numpy(zero_copy_only=False)] if len(distinct) else np.zeros(0, np.int64)


def row_links(table: pa.Table, settings: IdentitySettings, key: bytes, counts: Counter) -> pa.Table:
    """The distinct (customer node, identifier node, type, dt) links of rows with `identifiers` (JSON objects of
    type -> value, as validated). A value that is not valid for its type links nothing and is counted as
    `identity.invalid.<type>`; a value equal to the row's own customer id type is never given (validation)."""
    present = table.filter(pc.is_valid(table.column("identifiers")))
    if present.num_rows == 0:
        return LINK_SCHEMA.empty_table()
    customers = customer_nodes(present.column("customer_id"), key)
    nodes: dict[tuple[str, str], int | None] = {}
    rows: list[int] = []
    linked: list[int] = []
    types: list[str] = []
    for row, text in enumerate(present.column("identifiers").to_pylist()):
        for type_name, value in json.loads(text).items():
            if (type_name, value) not in nodes:
                normalised = normalise(settings.type(type_name).normalise, value, settings.phone_region)
                nodes[type_name, value] = None if normalised is None else node_of(identifier_hash(type_name, normalised, key))
            node = nodes[type_name, value]
            if node is None:
                counts[f"identity.invalid.{type_name}"] += 1
                continue
            rows.append(row)
            linked.append(node)
            types.append(type_name)
    index = pa.array(np.array(rows, np.int64))
    links = pa.table({"customer_node": pa.array(customers[index.to_numpy()]), "node": pa.array(linked, pa.int64()),
                      "identifier_type": pa.array(types, pa.string()), "dt": present.column("dt").take(index)},
                     schema=LINK_SCHEMA)
    return links.group_by(LINK_SCHEMA.names, use_threads=False).aggregate([]).select(LINK_SCHEMA.names)
