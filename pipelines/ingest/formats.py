"""Input files (JSON Lines / CSV, optionally gzip, any Beam filesystem): matching, checksums, line blocks, parts, records.

    >>> [f.path for f in match_inputs(["data/events/*.jsonl.gz"])]   # doctest: +SKIP
"""
from __future__ import annotations

import csv
import hashlib
import gzip
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.ingest.validate import ValueAndMeasures


class InputError(Exception):
    """An input that cannot be read at all (no match, unknown format, unreadable file): the run stops."""


@dataclass(frozen=True)
class InputFile:
    path: str
    size_bytes: int
    checksum: str | None = None  # filled by pipeline.prepare (file_checksum)
    source: int | None = None  # a file of RunConfig.sources[source]; None: a file in the input contract


@dataclass(frozen=True)
class RawRecord:
    """One data row of an input file: its 1-based line number, raw text and parsed fields (None if unparseable)."""

    line_no: int
    raw: str
    fields: dict | None
    parse_error: str | None = None


COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".zst", ".deflate")


def input_format(path: str) -> str:
    """`jsonl` or `csv`, from the file name (a trailing .gz/.gzip/.bz2/.zst is ignored)."""
    name = path.lower()
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    raise InputError(f"{path}: unknown input format (expected .jsonl, .json, .ndjson or .csv, optionally .gz)")


def match_inputs(patterns: list[str], contract: bool = True) -> list[InputFile]:
    """Expand files and glob patterns on any Beam filesystem; every pattern must match at least one file, and a
    file in the input contract (`contract`) must have a known format by its name."""
    files: dict[str, InputFile] = {}
    for pattern in patterns:
        try:
            result = FileSystems.match([pattern])[0]
        except Exception as err:  # Beam raises BeamIOError with the filesystem's reason
            raise InputError(f"cannot list {pattern}: {err}") from err
        matched = [m for m in result.metadata_list if not m.path.endswith("/")]
        if not matched:
            raise InputError(f"no input file matches {pattern}")
        for meta in matched:
            if contract:
                input_format(meta.path)
            files[meta.path] = InputFile(meta.path, meta.size_in_bytes)
    return sorted(files.values(), key=lambda f: f.path)


def _open(path: str):
    """A binary stream of the decompressed file. gzip (.gz, .gzip) goes through Python's gzip module,
    which, unlike Beam's CompressedFile, raises on a truncated or corrupt stream instead of ending early."""
    if path.lower().endswith((".gz", ".gzip")):
        return gzip.GzipFile(fileobj=FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED), mode="rb")
    return FileSystems.open(path)


def _read_guarded(path: str, read, start: int = 0) -> Iterator[bytes]:
    """Call `read(handle)` on the opened file (from byte `start`) until it returns b"": a corrupt or
    truncated stream or an I/O error becomes an InputError."""
    try:
        handle = _open(path)
        if start:
            handle.seek(start)
    except Exception as err:
        raise InputError(f"cannot open {path}: {err}") from err
    with handle:
        while True:
            try:
                data = read(handle)
            except (OSError, EOFError, zlib.error) as err:  # corrupt or truncated stream, I/O error
                raise InputError(f"cannot read {path}: {err}") from err
            if not data:
                return
            yield data


def _lines(path: str) -> Iterator[bytes]:
    return _read_guarded(path, lambda handle: handle.readline())


@dataclass(frozen=True)
class FilePart:
    """What one reader of an input file reads: bytes [start, end) (end None: to the end), whose first line is
    line `first_line_no`; with `every` > 1 only every `every`-th block of lines of them (`read_line_blocks`),
    starting with block `number % every`: a compressed file cannot be cut, so its parts each decompress it all
    and parse their share."""

    number: int = 0
    start: int = 0
    end: int | None = None
    first_line_no: int = 1
    every: int = 1

    def reads(self, block_index: int) -> bool:
        return block_index % self.every == self.number % self.every


WHOLE_FILE = FilePart()
COMPRESSION_RATIO = 8  # about what gzip does to JSON Lines: a compressed file's decompressed size, for its parts
MAX_COMPRESSED_PARTS = 4  # each part decompresses the whole file


def file_parts(path: str, part_bytes: int) -> list[FilePart]:
    """A local JSON Lines file larger than `part_bytes` (decompressed: estimated) as parts of about that size: an
    uncompressed one cut on lines (found, with the line numbers, by one read of the file), a compressed one in
    at most MAX_COMPRESSED_PARTS interleaved parts; any other file whole. CSV is never cut (a quoted cell may
    hold a line break), nor a remote file.

    >>> file_parts("/data/events.csv.gz", 64 << 20)
    [FilePart(number=0, start=0, end=None, first_line_no=1, every=1)]
    """
    if "://" in path or input_format(path) != "jsonl":
        return [WHOLE_FILE]
    size = os.path.getsize(path)
    if path.lower().endswith(COMPRESSED_SUFFIXES):
        every = min(MAX_COMPRESSED_PARTS, -(-size * COMPRESSION_RATIO // part_bytes))
        return [FilePart(number, every=every) for number in range(every)] if every > 1 else [WHOLE_FILE]
    if size <= part_bytes:
        return [WHOLE_FILE]
    parts, start, first_line_no, offset, lines = [], 0, 1, 0, 0
    for block in read_line_blocks(path, min(8 << 20, part_bytes)):
        end, lines = offset + len(block), lines + block.count(b"\n")
        if end - start >= part_bytes and end < size:  # blocks end on a line: cut after this one
            parts.append(FilePart(len(parts), start, end, first_line_no))
            start, first_line_no = end, lines + 1
        offset = end
    return [*parts, FilePart(len(parts), start, None, first_line_no)]


def read_line_blocks(path: str, block_bytes: int = 8 << 20, part: FilePart = WHOLE_FILE) -> Iterator[bytes]:
    """The decompressed file (or one part of it) in blocks of whole lines (each block but the last ends
    with a newline)."""
    left = None if part.end is None else part.end - part.start

    def read(handle) -> bytes:
        nonlocal left
        data = handle.read(block_bytes if left is None else min(block_bytes, left))
        if left is not None:
            left -= len(data)
        return data

    rest = b""
    for chunk in _read_guarded(path, read, part.start):
        end = chunk.rfind(b"\n") + 1
        if end:
            yield rest + chunk[:end]
            rest = chunk[end:]
        else:
            rest += chunk
    if rest:
        yield rest


def jsonl_record(line_no: int, line: bytes) -> RawRecord | None:
    """One JSON Lines line (with or without its line break) as a RawRecord; None for a blank line."""
    if not line.strip():
        return None  # blank lines are not rows
    try:
        raw = line.decode("utf-8-sig" if line_no == 1 else "utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        return RawRecord(line_no, line.decode("utf-8", "replace").rstrip("\r\n"), None, f"not UTF-8: {err.reason}")
    try:
        fields = json.loads(raw)
    except ValueError as err:
        return RawRecord(line_no, raw, None, f"invalid JSON: {err}")
    if isinstance(fields, dict):
        return RawRecord(line_no, raw, fields)
    return RawRecord(line_no, raw, None, f"a JSON {type(fields).__name__} is not an object")


def _read_jsonl(path: str) -> Iterator[RawRecord]:
    for line_no, line in enumerate(_lines(path), start=1):
        record = jsonl_record(line_no, line)
        if record is not None:
            yield record


def unflatten_csv_row(row: dict[str, str]) -> dict:
    """CSV cells to contract fields: empty cell -> null, `attributes` JSON text decoded,
    `rating.<key>[.expectation|.perception]` columns folded into a `ratings` object. A key filled both as
    `rating.<key>` and as `rating.<key>.<measure>` becomes a `validate.ValueAndMeasures`, which validation
    rejects (wrong_type, "ratings.<key>: both a value and measures").

    >>> unflatten_csv_row({"csat": "4", "rating.Q1.perception": "6", "rating.empathy": "5", "comment": ""})
    {'csat': '4', 'comment': None, 'ratings': {'Q1': {'perception': '6'}, 'empathy': '5'}}
    """
    fields: dict = {}
    values: dict[str, str] = {}  # key -> its plain `rating.<key>` cell (the last one)
    measures: dict[str, dict] = {}  # key -> its `rating.<key>.<measure>` cells
    keys: dict[str, None] = {}  # the keys in column order
    for column, cell in row.items():
        value = cell if cell is not None and cell.strip() != "" else None
        if column.startswith("rating."):
            if value is None:
                continue
            key, _, measure = column[len("rating."):].partition(".")
            keys[key] = None
            if measure:
                measures.setdefault(key, {})[measure] = value
            else:
                values[key] = value
        elif column == "attributes" and value is not None:
            try:
                fields[column] = json.loads(value)
            except ValueError:
                fields[column] = value  # left as text: validation reports wrong_type
        else:
            fields[column] = value
    if keys:
        fields["ratings"] = {key: ValueAndMeasures(values[key], measures[key]) if key in values and key in measures
                             else values[key] if key in values else measures[key] for key in keys}
    return fields


@dataclass(frozen=True)
class CsvRow:
    """One CSV record: its first physical line, its cells and the first "not UTF-8" reason of its lines, if any."""

    line_no: int
    cells: list[str]
    not_utf8: str | None

    @property
    def blank(self) -> bool:
        """No cells, or every cell blank: not a row."""
        return all(not c.strip() for c in self.cells)


def csv_records(lines: Iterable[bytes], first_line_no: int = 1) -> Iterator[tuple[CsvRow, int]]:
    """Every record of CSV lines read by Python's csv module (blank ones too), the first line numbered
    `first_line_no`, each with its last physical line."""
    not_utf8: dict[int, str] = {}  # physical line number -> decoding error

    def decoded() -> Iterator[str]:
        for number, line in enumerate(lines, start=first_line_no):
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError as err:
                not_utf8[number] = err.reason
                yield line.decode("utf-8", "replace")

    reader = csv.reader(decoded())
    last_line = first_line_no - 1
    for cells in reader:
        line_no, last_line = last_line + 1, first_line_no - 1 + reader.line_num
        errors = [not_utf8[n] for n in range(line_no, last_line + 1) if n in not_utf8]
        yield CsvRow(line_no, cells, errors[0] if errors else None), last_line


def csv_rows(lines: Iterable[bytes], first_line_no: int) -> Iterator[CsvRow]:
    """The rows (records that are not blank) of CSV lines, the first numbered `first_line_no`."""
    return (row for row, _ in csv_records(lines, first_line_no) if not row.blank)


def csv_line(line: bytes, line_no: int) -> tuple[CsvRow, bool]:
    """One physical line read alone as CSV: its record and whether it is one whole record (False when a quoted
    cell is still open at its end and the record goes on in the next line)."""
    row, last_line = next(csv_records((line, b"\n"), line_no))
    return row, last_line == line_no


def csv_header(cells: list[str]) -> list[str]:
    """Header names stripped, without the byte-order mark that spreadsheet exports start with."""
    return [h.strip().lstrip("\ufeff") for h in cells]


def read_csv_rows(path: str) -> tuple[list[str], Iterator[CsvRow]]:
    """The header (empty for an empty file) and the rows."""
    records = csv_records(_lines(path))
    first = next(records, None)
    if first is None:
        return [], iter(())
    return csv_header(first[0].cells), (row for row, _ in records if not row.blank)


def csv_record(header: list[str], row: CsvRow) -> RawRecord:
    """A CSV row as a RawRecord: the row as a JSON object (or its cells as a list when they do not fit the header)."""
    raw_row = dict(zip(header, row.cells))
    if row.not_utf8:  # the contract's "not UTF-8" unparseable line, as for JSON Lines
        raw = json.dumps(raw_row if len(row.cells) == len(header) else row.cells, ensure_ascii=False)
        return RawRecord(row.line_no, raw, None, f"not UTF-8: {row.not_utf8}")
    if len(row.cells) != len(header):
        raw = json.dumps(row.cells, ensure_ascii=False)
        return RawRecord(row.line_no, raw, None, f"{len(row.cells)} fields where the header has {len(header)}")
    return RawRecord(row.line_no, json.dumps(raw_row, ensure_ascii=False), unflatten_csv_row(raw_row))


def _read_csv(path: str) -> Iterator[RawRecord]:
    header, rows = read_csv_rows(path)
    for row in rows:
        yield csv_record(header, row)


def read_records(path: str) -> Iterator[RawRecord]:
    """Every data row of one input file, in file order. CSV raw records are the row as a JSON object."""
    return _read_jsonl(path) if input_format(path) == "jsonl" else _read_csv(path)


def file_digest(path: str) -> str:
    """The sha256 hex digest of a file's bytes (not decompressed)."""
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksum(path: str) -> str:
    """`sha256:<hex>` of a local file's bytes; elsewhere the filesystem's own checksum (e.g. GCS crc32c)."""
    if "://" in path:
        return f"{FileSystems.get_filesystem(path).scheme()}:{FileSystems.checksum(path)}"
    return f"sha256:{file_digest(path)}"
