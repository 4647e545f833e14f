"""motpipe analytics computed outside SQL (key drivers)."""
