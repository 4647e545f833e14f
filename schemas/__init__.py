"""Versioned pyarrow schemas of motpipe's output tables (see tables.py) and the input contract docs."""
from schemas.tables import SCHEMA_VERSION, TABLES, table_schema

__all__ = ["SCHEMA_VERSION", "TABLES", "table_schema"]
