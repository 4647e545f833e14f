"""Identity stitching: identifiers seen together link customer ids into persons (docs/identity.md)."""
