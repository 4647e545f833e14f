"""Input files (JSON Lines / CSV, optionally gzip, any Beam filesystem): matching, checksums, line blocks, parts, records.

    >>> [f.path for f in match_inputs(["data/events/*.jsonl.gz"])]   # doctest: +SKIP
"""
from __future__ import annotations

import bz2
import csv
import hashlib
import gzip
import io
import itertools
import json
import os
import re
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import zstandard
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
    parts: tuple[FilePart, ...] = ()  # the parts it is read in (file_parts), filled by pipeline.prepare


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
    """Expand files and glob patterns on any Beam filesystem; every pattern must match at least one file, none a
    directory, and a file in the input contract (`contract`) must have a known format by its name. A local path
    naming an existing file is that file, even with glob characters in its name (`data[1].jsonl`: the glob would
    look for `data1.jsonl`)."""
    files: dict[str, InputFile] = {}
    for pattern in patterns:
        if "://" not in pattern and os.path.isfile(pattern):
            if contract:
                input_format(pattern)
            files[pattern] = InputFile(pattern, os.path.getsize(pattern))
            continue
        try:
            result = FileSystems.match([pattern])[0]
        except Exception as err:  # Beam raises BeamIOError with the filesystem's reason
            raise InputError(f"cannot list {pattern}: {err}") from err
        matched = [m for m in result.metadata_list if not m.path.endswith("/")]
        if not matched:
            raise InputError(f"no input file matches {pattern}")
        for meta in matched:
            if "://" not in meta.path and os.path.isdir(meta.path):
                raise InputError(f"{meta.path} is a directory, not an input file (for the files in it: '{meta.path}/*')")
            if contract:
                input_format(meta.path)
            files[meta.path] = InputFile(meta.path, meta.size_in_bytes)
    return sorted(files.values(), key=lambda f: f.path)


class _CheckedStream(io.RawIOBase):
    """The decompressed bytes of a compressed stream that must end with its end-of-stream marker: compressed data
    that stops before it (a truncated file) raises EOFError instead of ending the data early, as Beam's
    CompressedFile does. Concatenated streams (zstd frames) are read one after the other."""

    def __init__(self, raw, decompressor: Callable[[], object]):
        self.raw, self.new_decompressor = raw, decompressor
        self.decompressor, self.pending, self.offset, self.started = decompressor(), memoryview(b""), 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self.offset == len(self.pending):
            if not self._decompress_more():
                return 0
        n = min(len(buffer), len(self.pending) - self.offset)
        buffer[:n] = self.pending[self.offset:self.offset + n]
        self.offset += n
        return n

    def _decompress_more(self) -> bool:
        """Decompress the next compressed chunk into `pending`; False at the end of the data."""
        data = self.raw.read(1 << 16)
        if self.decompressor.eof:
            data = self.decompressor.unused_data + data
            if not data:
                return False
            self.decompressor = self.new_decompressor()  # the next stream of a concatenation
        elif not data:
            if not self.started:
                return False  # an empty file: no rows
            raise EOFError("compressed data ended before the end-of-stream marker (a truncated file)")
        self.pending, self.offset, self.started = memoryview(self.decompressor.decompress(data)), 0, True
        return True

    def close(self) -> None:
        self.raw.close()
        super().close()


DECOMPRESSORS = {  # suffix -> a new decompressor with `decompress`, `eof` and `unused_data`
    ".bz2": bz2.BZ2Decompressor,
    ".zst": lambda: zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj(),
    ".deflate": zlib.decompressobj,  # Beam's DEFLATE: the zlib format
}


def _open(path: str):
    """(a binary stream of the decompressed file, the file's own stream under it). Every compressed format is read
    to its end-of-stream marker, so a truncated or corrupt file raises instead of ending early (as Beam's
    CompressedFile would): gzip (.gz, .gzip) through Python's gzip module, .bz2, .zst and .deflate through
    `_CheckedStream`."""
    name = path.lower()
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if name.endswith((".gz", ".gzip")):
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    suffix = next((s for s in DECOMPRESSORS if name.endswith(s)), None)
    return (io.BufferedReader(_CheckedStream(raw, DECOMPRESSORS[suffix]), 1 << 20) if suffix else raw), raw


@dataclass
class ReadTally:
    """What reading one file (or part) took from it, counted on the bytes apart from any parsing: `bytes_read`
    of the file as stored (compressed ones too) and `lines` of its decompressed data (line breaks, plus a last
    line without one); the reader adds `other_lines`, the lines that start no row (blank lines, a CSV header,
    the further lines of a CSV row with a quoted line break). Filled only when the file was read to its end.
    A run reconciles rows + other_lines = lines and bytes_read = the file's size (`pipeline.summarise`)."""

    bytes_read: int = 0
    lines: int = 0
    other_lines: int = 0


def _read_guarded(path: str, read, start: int = 0, tally: ReadTally | None = None) -> Iterator[bytes]:
    """Call `read(handle)` on the opened file (from byte `start`) until it returns b"": a corrupt or
    truncated stream or an I/O error becomes an InputError. At the end, `tally` gets the bytes and lines read.
    Both streams are closed at the end, on an error and when the caller stops early (a GzipFile leaves its
    `fileobj` open)."""
    try:
        handle, raw = _open(path)
    except Exception as err:
        raise InputError(f"cannot open {path}: {err}") from err
    lines, last = 0, b"\n"
    with raw, handle:
        try:
            if start:
                handle.seek(start)
        except Exception as err:
            raise InputError(f"cannot open {path}: {err}") from err
        while True:
            try:
                data = read(handle)
            except (OSError, EOFError, zlib.error, zstandard.ZstdError) as err:  # corrupt or truncated stream, I/O error
                raise InputError(f"cannot read {path}: {err}") from err
            if not data:
                break
            if tally is not None:
                lines, last = lines + data.count(b"\n"), data[-1:]
            yield data
        if tally is not None:
            tally.bytes_read += raw.tell() - start
            tally.lines += lines + (last != b"\n")


MAX_LINE_BYTES = 1 << 20  # a longer line is an unparseable_line row, never parsed (schemas/input_contract_v1.md)
LONG_LINE = b"\x00motpipe: a line over the maximum size\x00"  # stands in for such a line: then its size and start
_PREVIEW_BYTES = 200


def long_line(size: int, start: bytes) -> bytes:
    """The line that stands in for a line of `size` bytes over MAX_LINE_BYTES, beginning with `start`."""
    return LONG_LINE + str(size).encode() + b"\x00" + start[:_PREVIEW_BYTES].rstrip(b"\r\n") + b"\n"


def long_line_error(line: str) -> tuple[str, str] | None:
    """(the start of the line, why it is not read) for a line that stands in for one over MAX_LINE_BYTES, else None."""
    if not line.startswith(LONG_LINE.decode()):
        return None
    size, _, start = line[len(LONG_LINE):].rstrip("\r\n").partition("\x00")
    return start, f"a line of {int(size):,} bytes is longer than the maximum line size ({MAX_LINE_BYTES:,} bytes)"


def _lines(path: str) -> Iterator[bytes]:
    """The file's lines; one over MAX_LINE_BYTES as its `long_line` (read through, never held whole)."""
    def read(handle) -> bytes:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
            return line
        size, rest = len(line), line
        while rest and not rest.endswith(b"\n"):
            rest = handle.readline(1 << 20)
            size += len(rest)
        return long_line(size, line)

    return _read_guarded(path, read)


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

    @property
    def counts_the_file(self) -> bool:
        """Whether this part's bytes and lines read count: of interleaved parts, which each read the whole
        file, only the first; every part cut out of a file."""
        return self.number % self.every == 0


WHOLE_FILE = FilePart()
COMPRESSION_RATIO = 8  # about what gzip does to JSON Lines: a compressed file's decompressed size, for its parts
MAX_COMPRESSED_PARTS = 4  # each part decompresses the whole file


def file_parts(path: str, part_bytes: int) -> list[FilePart]:
    """A local JSON Lines file larger than `part_bytes` (decompressed: estimated) as parts of at most about that
    size: an uncompressed one cut on lines into ceil(size / part_bytes) parts of about equal size (found, with the
    line numbers, by one read of the file), a compressed one in at most MAX_COMPRESSED_PARTS interleaved parts;
    any other file whole. CSV is never cut (a quoted cell may hold a line break), nor a remote file.

    >>> file_parts("/data/events.csv.gz", 64 << 20)
    [FilePart(number=0, start=0, end=None, first_line_no=1, every=1)]
    """
    if "://" in path or input_format(path) != "jsonl":
        return [WHOLE_FILE]
    size = os.path.getsize(path)
    if path.lower().endswith(COMPRESSED_SUFFIXES):
        every = min(MAX_COMPRESSED_PARTS, -(-size * COMPRESSION_RATIO // part_bytes))
        return [FilePart(number, every=every) for number in range(every)] if every > 1 else [WHOLE_FILE]
    count = -(-size // part_bytes)
    if count <= 1:
        return [WHOLE_FILE]
    targets = deque(size * k // count for k in range(1, count))  # a part starts on the first line at or after its target
    parts, start, first_line_no, offset, lines = [], 0, 1, 0, 0
    for chunk in _read_guarded(path, lambda handle: handle.read(min(8 << 20, part_bytes))):
        counted = 0  # bytes of this chunk whose line breaks are in `lines`
        while targets and targets[0] - 1 < offset + len(chunk):
            found = chunk.find(b"\n", max(targets[0] - 1 - offset, counted))
            if found < 0:  # a long line runs past the target: cut after it, in a later chunk
                break
            lines += _newlines(memoryview(chunk)[counted:found + 1])
            counted, end = found + 1, offset + found + 1
            while targets and targets[0] <= end:  # a line longer than a part passes several targets
                targets.popleft()
            if end < size:
                parts.append(FilePart(len(parts), start, end, first_line_no))
                start, first_line_no = end, lines + 1
        lines += _newlines(memoryview(chunk)[counted:])
        offset += len(chunk)
    return [*parts, FilePart(len(parts), start, None, first_line_no)] if parts else [WHOLE_FILE]


def estimated_bytes(f: InputFile, part: FilePart) -> int:
    """About how many decompressed bytes reading `part` of `f` parses (compressed: COMPRESSION_RATIO times its size)."""
    if part.end is not None:
        return part.end - part.start
    if f.path.lower().endswith(COMPRESSED_SUFFIXES):
        return f.size_bytes * COMPRESSION_RATIO // part.every
    return f.size_bytes - part.start


def _newlines(data: bytes) -> int:
    """The line breaks in `data`, counted by numpy, which gives up the GIL (bytes.count holds it, and at the start of
    a run Great Expectations' import thread wants it too); the 2.75 GB file of 10M events is cut in 0.8 s."""
    return int(np.count_nonzero(np.frombuffer(data, np.uint8) == 10))


def read_line_blocks(path: str, block_bytes: int = 8 << 20, part: FilePart = WHOLE_FILE,
                     max_line_bytes: int | None = MAX_LINE_BYTES, tally: ReadTally | None = None) -> Iterator[bytes]:
    """The decompressed file (or one part of it) in blocks of whole lines (each block but the last ends
    with a newline); a line over `max_line_bytes` as its `long_line` (the bytes as they are with None), so a
    huge line is never held whole. `tally`: see `_read_guarded`."""
    left = None if part.end is None else part.end - part.start

    def read(handle) -> bytes:
        nonlocal left
        data = handle.read(block_bytes if left is None else min(block_bytes, left))
        if left is not None:
            left -= len(data)
        return data

    limit = max_line_bytes
    rest, dropped = b"", 0  # the start of the line being read, and how many bytes of it were dropped
    for chunk in _read_guarded(path, read, part.start, tally):
        end = chunk.rfind(b"\n") + 1
        if not end:
            rest += chunk
            if limit is not None and len(rest) > limit:  # over the maximum: keep its start, count the rest
                rest, dropped = rest[:_PREVIEW_BYTES], dropped + len(rest) - _PREVIEW_BYTES
            continue
        first = chunk.find(b"\n") + 1
        head = rest + chunk[:first]
        if dropped:
            head = long_line(dropped + len(head), head)
        yield _bounded(head + chunk[first:end], limit)
        rest, dropped = chunk[end:], 0
    if dropped:
        yield long_line(dropped + len(rest), rest)
    elif rest:
        yield _bounded(rest, limit)


def block_lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of blocks of whole lines (`read_line_blocks`), each with its line break."""
    return itertools.chain.from_iterable(map(io.BytesIO, blocks))


def _bounded(block: bytes, limit: int | None) -> bytes:
    """`block` (whole lines) with every line over `limit` bytes replaced by its `long_line`."""
    if limit is None or len(block) <= limit:
        return block
    breaks = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.append(breaks + 1, len(block)) if len(starts) > len(breaks) else breaks + 1
    long = np.flatnonzero(ends - starts[:len(ends)] > limit)
    if not len(long):
        return block
    pieces, position = [], 0
    for line in long:
        start, end = int(starts[line]), int(ends[line])
        pieces += [block[position:start], long_line(end - start, block[start:end])]
        position = end
    return b"".join([*pieces, block[position:]])


def jsonl_record(line_no: int, line: bytes) -> RawRecord | None:
    """One JSON Lines line (with or without its line break) as a RawRecord; None for a blank line."""
    if not line.strip():
        return None  # blank lines are not rows
    if line.startswith(LONG_LINE):
        start, message = long_line_error(line.decode("utf-8", "replace"))
        return RawRecord(line_no, start, None, message)
    try:
        raw = line.decode("utf-8-sig" if line_no == 1 else "utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        return RawRecord(line_no, line.decode("utf-8", "replace").rstrip("\r\n"), None, f"not UTF-8: {err.reason}")
    fields, error = json_value(raw)
    if error:
        return RawRecord(line_no, raw, None, error)
    if isinstance(fields, dict):
        return RawRecord(line_no, raw, fields)
    return RawRecord(line_no, raw, None, f"a JSON {type(fields).__name__} is not an object")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def json_value(text: str) -> tuple[object, str | None]:
    """(the JSON value of `text`, None), or (None, why it is not one): invalid JSON, nested deeper than Python's
    recursion limit (about 1,000 levels), or a string with a lone surrogate escape (`"\\ud800"`: no character,
    so no UTF-8 either)."""
    try:
        value = json.loads(text)
    except ValueError as err:
        return None, f"invalid JSON: {err}"
    except RecursionError:
        return None, "invalid JSON: nested too deeply"
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return None, "invalid JSON: a lone surrogate escape (\\ud800-\\udfff) is not a character"
        except RecursionError:
            return None, "invalid JSON: nested too deeply"
    return value, None


def _read_jsonl(path: str) -> Iterator[RawRecord]:
    for line_no, line in enumerate(_lines(path), start=1):
        record = jsonl_record(line_no, line)
        if record is not None:
            yield record


def unflatten_csv_row(row: dict[str, str]) -> dict:
    """CSV cells to contract fields: empty cell -> null, `attributes` JSON text decoded,
    `identifier.<type>` columns folded into an `identifiers` object (blank cells left out),
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
        if column.startswith("identifier."):
            if value is not None:
                fields.setdefault("identifiers", {})[column[len("identifier."):]] = value
        elif column.startswith("rating."):
            if value is None:
                continue
            key, _, measure = column[len("rating."):].partition(".")
            keys[key] = None
            if measure:
                measures.setdefault(key, {})[measure] = value
            else:
                values[key] = value
        elif column in ("attributes", "identifiers") and value is not None:
            decoded, error = json_value(value)
            fields[column] = value if error else decoded  # text: validation reports wrong_type
        else:
            fields[column] = value
    if keys:
        fields["ratings"] = {key: ValueAndMeasures(values[key], measures[key]) if key in values and key in measures
                             else values[key] if key in values else measures[key] for key in keys}
    return fields


@dataclass(frozen=True)
class CsvRow:
    """One CSV record: its first physical line, its cells, why it cannot be a row (the first "not UTF-8" reason of
    its lines, or the csv module's error; None when it can) and its physical lines."""

    line_no: int
    cells: list[str]
    error: str | None
    lines: tuple[str, ...] = ()

    @property
    def blank(self) -> bool:
        """No cells, or every cell blank: not a row."""
        return all(not c.strip() for c in self.cells)

    @property
    def quote_open(self) -> bool:
        """A record over several lines with an odd number of quote characters: a quoted cell that the end of the
        input closed, not a quote."""
        return len(self.lines) > 1 and sum(line.count('"') for line in self.lines) % 2 == 1


def csv_records(lines: Iterable[bytes], first_line_no: int = 1) -> Iterator[tuple[CsvRow, int]]:
    """Every record of CSV lines read by Python's csv module (blank ones too), the first line numbered
    `first_line_no`, each with its last physical line. A record the csv module rejects (a carriage return in an
    unquoted cell, a cell over `csv.field_size_limit()`) is a CsvRow with the error and its text as one cell."""
    not_utf8: dict[int, str] = {}  # physical line number -> decoding error
    consumed: list[str] = []  # the lines of the record being read

    def decoded() -> Iterator[str]:
        for number, line in enumerate(lines, start=first_line_no):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as err:
                not_utf8[number] = err.reason
                text = line.decode("utf-8", "replace")
            consumed.append(text)
            yield text

    reader = csv.reader(decoded())
    last_line = first_line_no - 1
    while True:
        try:
            cells, error = next(reader), None
        except StopIteration:
            return
        except csv.Error as err:
            cells, error = None, "CSV: " + ("a carriage return in an unquoted cell (or lines that end in CR alone)"
                                            if "new-line character" in str(err) else str(err))
        line_no, last_line = last_line + 1, first_line_no - 1 + reader.line_num
        record_lines, consumed[:] = tuple(consumed), []
        errors = [f"not UTF-8: {not_utf8[n]}" for n in range(line_no, last_line + 1) if n in not_utf8]
        text = "".join(record_lines).rstrip("\r\n")
        too_long = long_line_error(record_lines[0]) if record_lines else None
        if too_long:
            (text, error), cells = too_long, None
        yield CsvRow(line_no, [text] if cells is None else cells, (errors or [error])[0], record_lines), last_line


def _counted_row(row: CsvRow, tally: ReadTally) -> bool:
    """Add the lines of `row` that start no row to `tally`; whether `row` is a row (not blank)."""
    tally.other_lines += len(row.lines) - (not row.blank)
    return not row.blank


def whole_rows(records: Iterator[tuple[CsvRow, int]], tally: ReadTally | None = None) -> Iterator[CsvRow]:
    """The rows (records that are not blank) of a CSV input to its end. A quoted cell still open at the end has
    swallowed the lines after its quote: each of its non-blank lines becomes a row of its own that cannot be read
    (`unparseable_line`), so every line stays accounted for. `tally.other_lines` gets the lines that start no row."""
    tally = tally or ReadTally()
    previous = None
    for row, _ in records:
        if previous is not None and _counted_row(previous, tally):
            yield previous
        previous = row
    if previous is None:
        return
    if not previous.quote_open:
        if _counted_row(previous, tally):
            yield previous
        return
    error = f"CSV: the quoted cell opened on line {previous.line_no} is not closed before the end of the file"
    for offset, line in enumerate(previous.lines):
        if line.strip():
            yield CsvRow(previous.line_no + offset, [line.rstrip("\r\n")], error, (line,))
        else:
            tally.other_lines += 1


def csv_rows(lines: Iterable[bytes], first_line_no: int, tally: ReadTally | None = None) -> Iterator[CsvRow]:
    """The rows of CSV lines to the end of the input, the first numbered `first_line_no` (see `whole_rows`)."""
    return whole_rows(csv_records(lines, first_line_no), tally)


def csv_line(line: bytes, line_no: int) -> tuple[CsvRow, bool]:
    """One physical line read alone as CSV: its record and whether it is one whole record (False when a quoted
    cell is still open at its end and the record goes on in the next line)."""
    row, last_line = next(csv_records((line, b"\n"), line_no))
    return row, last_line == line_no


def csv_header(cells: list[str]) -> list[str]:
    """Header names stripped, without the byte-order mark that spreadsheet exports start with."""
    return [h.lstrip("\ufeff").strip() for h in cells]


def read_csv_rows(lines: Iterable[bytes], tally: ReadTally | None = None) -> tuple[list[str], Iterator[CsvRow]]:
    """The header (empty for an empty file) and the rows of a CSV file's lines. A header the csv module cannot read
    (e.g. a file whose lines end in CR alone: one line with carriage returns inside) is a row that cannot be read,
    and the header empty. `tally.other_lines` gets the lines that start no row."""
    tally = tally or ReadTally()
    records = csv_records(lines)
    first = next(records, None)
    if first is None:
        return [], iter(())
    if first[0].error:
        return [], whole_rows(itertools.chain([first], records), tally)
    tally.other_lines += len(first[0].lines)
    return csv_header(first[0].cells), whole_rows(records, tally)


def csv_record(header: list[str], row: CsvRow) -> RawRecord:
    """A CSV row as a RawRecord: the row as a JSON object (or its cells as a list when they do not fit the header)."""
    raw_row = dict(zip(header, row.cells))
    if row.error:  # not UTF-8 (the contract's unparseable line, as for JSON Lines) or not CSV
        raw = json.dumps(raw_row if len(row.cells) == len(header) else row.cells, ensure_ascii=False)
        return RawRecord(row.line_no, raw, None, row.error)
    if len(row.cells) != len(header):
        raw = json.dumps(row.cells, ensure_ascii=False)
        return RawRecord(row.line_no, raw, None, f"{len(row.cells)} fields where the header has {len(header)}")
    return RawRecord(row.line_no, json.dumps(raw_row, ensure_ascii=False), unflatten_csv_row(raw_row))


def _read_csv(path: str) -> Iterator[RawRecord]:
    header, rows = read_csv_rows(_lines(path))
    for row in rows:
        yield csv_record(header, row)


def read_records(path: str) -> Iterator[RawRecord]:
    """Every data row of one input file, in file order. CSV raw records are the row as a JSON object."""
    return _read_jsonl(path) if input_format(path) == "jsonl" else _read_csv(path)


DIGEST_CHUNK_BYTES = 16 << 20


def file_digest(path: str) -> str:
    """The sha256 hex digest of a file's bytes (not decompressed).

    Read in 16 MiB chunks: each read and each update gives up the GIL and must win it back from whatever thread
    holds it (at the start of `motpipe run`, Great Expectations' import), which costs up to the 5 ms switch
    interval per call; with 1 MiB chunks the 275 MB file of the 1M production benchmark took 1.4 s instead of 0.2 s.
    """
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        while chunk := handle.read(DIGEST_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksum(path: str) -> str:
    """`sha256:<hex>` of a local file's bytes; elsewhere the filesystem's own checksum (e.g. GCS crc32c)."""
    if "://" in path:
        return f"{FileSystems.get_filesystem(path).scheme()}:{FileSystems.checksum(path)}"
    return f"sha256:{file_digest(path)}"
