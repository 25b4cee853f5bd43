"""CSV and TSV: a binary stream decoded and parsed strictly, record by record, in bounded memory.

Physical lines are decoded one block at a time, so a decoding error names its line; records are
numbered as a spreadsheet shows them (a quoted field with newlines stays one row).
"""

from __future__ import annotations

import codecs
import csv
import gzip
import re
import zlib
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Protocol

from .base import (
    GZIP_MAGIC,
    ReadOptions,
    Row,
    TableReader,
    check_unnamed,
    human_size,
    named_columns,
    reject,
)

BLOCK_SIZE = 64 * 1024
DELIMITERS = (",", ";", "\t", "|")
#: leading lines searched for the header line the delimiter is detected from
SNIFF_LINES = 1000
#: decompressed text below this size is not checked for its compression ratio
RATIO_CHECK_MIN_BYTES = 1024 * 1024

_LINE_OR_REST = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
#: characters str.splitlines() breaks at besides "\r" and "\n"; csv does not
_OTHER_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
_BREAK = re.compile(r"\r\n|\r|\n")
_SEP_LINE = re.compile(r"sep=(.)(?:\r\n|\r|\n)?", re.IGNORECASE)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

NumberedLine = tuple[int, str]


class Readable(Protocol):
    """The one method a source stream needs."""

    def read(self, size: int = -1, /) -> bytes: ...


class PrefixedStream:
    """A read-only stream that first returns ``prefix``, then the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: Readable) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if not self._prefix:
            return self._stream.read(size)
        if size is None or size < 0:
            data, self._prefix = self._prefix + self._stream.read(), b""
            return data
        data, self._prefix = self._prefix[:size], self._prefix[size:]
        return data


class CountingStream:
    """A read-only stream that counts the bytes read from ``stream``."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        return data


class CompressionBomb(Exception):
    """Decompressed data expanded more than ``limit`` times the compressed bytes read."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class RatioGuard:
    """Decompressed data, refused once it is more than ``limit`` times the compressed bytes
    ``compressed`` has read (past :data:`RATIO_CHECK_MIN_BYTES`), so a small file cannot
    expand into gigabytes."""

    def __init__(self, decompressed: Readable, compressed: CountingStream, limit: int) -> None:
        self._decompressed = decompressed
        self._compressed = compressed
        self._limit = limit
        self._size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._decompressed.read(size)
        self._size += len(data)
        if self._size > RATIO_CHECK_MIN_BYTES and self._size > self._limit * self._compressed.count:
            raise CompressionBomb(self._limit)
        return data


def read_head(stream: Readable, size: int) -> bytes:
    """Up to ``size`` bytes from ``stream``, reading again after short reads."""
    parts: list[bytes] = []
    missing = size
    while missing > 0:
        part = stream.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def resolve_encoding(requested: str, head: bytes) -> tuple[str, str, bytes]:
    """The codec, its name for the user, and the BOM to skip, for ``requested`` and ``head``.

    Without a requested encoding the file is UTF-8 (its BOM dropped), or UTF-16/32 when it
    starts with their BOM.
    """
    if not requested.strip():
        for bom, codec in _BOMS:
            if head.startswith(bom):
                return codec, codec.removesuffix("-le").removesuffix("-be"), bom
        return "utf-8-sig", "utf-8", b""
    try:
        info = codecs.lookup(requested.strip())
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):  # e.g. base64, zlib
        raise reject(
            f'The encoding "{requested}" is not known. Choose a name such as utf-8, '
            "windows-1252 or iso-8859-15."
        )
    name = info.name
    if name in ("utf-8", "utf-8-sig"):
        return "utf-8-sig", "utf-8", b""
    return name, requested.strip(), b""


class LineSource:
    """The numbered physical lines of a binary stream, decoded with their line ends.

    A line ends at ``\\r\\n``, ``\\r`` or ``\\n``, as ``open(newline="")`` reads it. A line
    longer than ``max_chars`` is refused before it is held whole in memory.
    """

    def __init__(self, stream: Readable, codec: str, label: str, max_chars: int) -> None:
        self._stream = stream
        self._codec = codec
        self._label = label
        self._max_chars = max_chars
        self._decoder = codecs.getincrementaldecoder(codec)("strict")
        self.number = 0

    def __iter__(self) -> Iterator[NumberedLine]:
        rest: list[str] = []  # an unfinished line, in pieces
        final = False
        while not final:
            block = self._read_block()
            final = not block
            text = self._decode(block, final, rest)
            if not (final or _has_break(text) or (rest and rest[-1].endswith("\r"))):
                rest.append(text)
                self._check_length(rest)
                continue
            rest.append(text)
            text = "".join(rest)  # a long line is held twice here at most, never three times
            rest.clear()
            lines = split_lines(text)
            del text
            # the last line waits for more text unless it ends with "\n" ("\r" may be "\r\n")
            rest = [lines.pop()] if lines and not final and not lines[-1].endswith("\n") else []
            self._check_length(rest)
            lines.reverse()
            while lines:  # popped, so a line given out is not also held by the list
                self.number += 1
                yield self.number, lines.pop()

    def _read_block(self) -> bytes:
        try:
            return self._stream.read(BLOCK_SIZE)
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise reject(
                f"The compressed file is damaged or cut short (line {self.number + 1})."
            ) from error
        except CompressionBomb as error:
            raise reject(
                f"The compressed file expands more than {error.limit:,} times when decompressed "
                f"(line {self.number + 1}); the limit is {error.limit:,} times. The file looks "
                "like a compression bomb.",
                self.number + 1,
            ) from None

    def _decode(self, block: bytes, final: bool, rest: list[str]) -> str:
        try:
            return self._decoder.decode(block, final)
        except UnicodeDecodeError as error:
            before = error.object[: error.start].decode(self._codec, "replace")
            line = self.number + 1 + len(_BREAK.findall("".join(rest) + before))
            raise self._decode_error(line) from None

    def _decode_error(self, line: int) -> Exception:
        if self._label == "utf-8":
            return reject(
                f"The file is not valid UTF-8 (line {line}). Save it as UTF-8, or choose its "
                "encoding (for example windows-1252) on the job.",
                line,
            )
        return reject(
            f"The file cannot be read as {self._label} (line {line}). Check the encoding "
            "chosen on the job, or save the file as UTF-8.",
            line,
        )

    def _check_length(self, rest: list[str]) -> None:
        if sum(map(len, rest)) > self._max_chars:
            line = self.number + 1
            raise reject(
                f"Line {line} is longer than the limit of {human_size(self._max_chars)}; "
                "it is probably not a text file.",
                line,
            )


def _has_break(text: str) -> bool:
    return "\n" in text or "\r" in text


def split_lines(text: str) -> list[str]:
    """``text`` cut after each ``\\r\\n``, ``\\r`` or ``\\n``; the last piece may lack one."""
    if any(mark in text for mark in _OTHER_BREAKS):
        return _LINE_OR_REST.findall(text)
    return text.splitlines(keepends=True)


def detect_delimiter(line: str, default: str = ",") -> str:
    """The delimiter of ``line`` among ``, ; TAB |``: the most frequent outside quotes.

    Ties go to the earlier of ``, ; TAB |``; a line with none of them gives ``default``.
    """
    outside = "".join(line.split('"')[::2])
    counts = [(outside.count(candidate), candidate) for candidate in DELIMITERS]
    best_count, best = max(counts, key=lambda pair: pair[0])
    return best if best_count else default


class CsvReader(TableReader):
    """A CSV or TSV table read from a binary stream; see :func:`open_table`."""

    def __init__(self, stream: Readable, options: ReadOptions, *, tsv: bool = False) -> None:
        self._options = options
        self.detected: dict[str, str] = {}
        self._line = 0
        self._record_start = 0
        self._record_chars = 0
        self._row_number = 0
        self.chars_read = 0
        lines = iter(self._line_source(self._open_source(stream)))
        leading, delimiter = self._sniff(lines, tsv=tsv)
        self.detected["delimiter"] = delimiter
        allow_field_size(options.max_field_bytes)
        self._records = csv.reader(
            self._feed(leading), delimiter=delimiter, quotechar='"', doublequote=True,
            strict=True,
        )
        self.header_row, raw_header = self._read_header()
        self.header, self._unnamed = named_columns(raw_header)

    def _open_source(self, stream: Readable) -> Readable:
        """``stream``, decompressed when it is gzip (within the ratio limit)."""
        head = read_head(stream, len(GZIP_MAGIC))
        source = PrefixedStream(head, stream)
        if head == GZIP_MAGIC:
            self.detected["compression"] = "gzip"
            compressed = CountingStream(source)
            unzipped = gzip.GzipFile(fileobj=compressed, mode="rb")  # type: ignore[arg-type]
            return RatioGuard(unzipped, compressed, self._options.gzip_max_compression_ratio)
        return source

    def _line_source(self, source: Readable) -> LineSource:
        head = read_head(source, 4)
        codec, label, bom = resolve_encoding(self._options.encoding, head)
        self.detected["encoding"] = label
        rest = PrefixedStream(head[len(bom) :], source)
        return LineSource(rest, codec, label, self._options.max_record_bytes)

    def _sniff(self, lines: Iterator[NumberedLine], *, tsv: bool) -> tuple[Iterator, str]:
        """The delimiter, and the lines read to find it.

        The delimiter is the job's, or an Excel ``sep=X`` first line's (that line is dropped,
        as Excel does), or TAB for TSV, or the one detected on the first non-blank line.
        """
        first = next(lines, None)
        if first is None:
            raise reject("The file is empty.")
        sep = _SEP_LINE.fullmatch(first[1])
        if sep:
            return lines, self._options.delimiter or sep.group(1)
        if self._options.delimiter or tsv:
            return chain([first], lines), self._options.delimiter or "\t"
        peeked = [first]
        while not peeked[-1][1].strip() and len(peeked) < SNIFF_LINES:
            line = next(lines, None)
            if line is None:
                break
            peeked.append(line)
        return chain(peeked, lines), detect_delimiter(peeked[-1][1])

    def _feed(self, lines: Iterable[NumberedLine]) -> Iterator[str]:
        """The lines for the csv module, checked for NUL bytes and the record size."""
        limit = self._options.max_record_bytes
        for number, line in lines:
            self._line = number
            if not self._record_chars:
                self._record_start = number
            if "\x00" in line:
                raise reject(
                    f"The file contains NUL bytes at line {number}; it is probably not a "
                    "text file.",
                    number,
                )
            self._record_chars += len(line)
            if self._record_chars > limit:
                raise self._record_too_large(limit)
            yield line

    def _record_too_large(self, limit: int) -> Exception:
        start = self._record_start
        return reject(
            f"The row starting at line {start} is larger than the limit of {human_size(limit)}. "
            "Check for a quote that is opened but never closed.",
            start,
        )

    def _next_record(self) -> list[str] | None:
        """The next record, or ``None`` at the end; numbers it and checks its fields."""
        try:
            record = next(self._records, None)
        except csv.Error as error:
            raise self._csv_error(error) from None
        if record is not None:
            self._row_number += 1
            if self._record_chars > self._options.max_field_bytes:
                self._check_fields(record)
        self.chars_read += self._record_chars
        self._record_chars = 0
        return record

    def _check_fields(self, record: list[str]) -> None:
        limit = self._options.max_field_bytes
        if any(len(field) > limit for field in record):
            raise self._field_too_large(limit)

    def _field_too_large(self, limit: int) -> Exception:
        start = self._record_start
        return reject(
            f"A field of the row starting at line {start} is larger than the limit of "
            f"{human_size(limit)}. If this is unexpected, check for a quote that is opened "
            "but never closed.",
            start,
        )

    def _csv_error(self, error: csv.Error) -> Exception:
        text = str(error)
        if "unexpected end of data" in text:
            start = self._record_start
            return reject(
                f"Unterminated quoted field starting at line {start}: a quote is opened but "
                "never closed.",
                start,
            )
        if "field larger than field limit" in text:
            return self._field_too_large(self._options.max_field_bytes)
        if "expected after" in text:
            return reject(
                f"Bad quoting at line {self._line}: a quoted field must end with a quote "
                'followed by the delimiter; a quote inside a quoted field is written twice ("").',
                self._line,
            )
        return reject(f"The file cannot be read as CSV at line {self._line}: {text}.", self._line)

    def _read_header(self) -> tuple[int, list[str]]:
        record = self._next_record()
        while record == []:
            record = self._next_record()
        if record is None:
            raise reject("The file is empty.")
        if not any(record):
            raise reject(
                f"The header row (row {self._row_number}) is empty: the first row must name "
                "the columns.",
                self._line,
            )
        return self._row_number, record

    def rows(self) -> Iterator[Row]:
        """``(row number, cells)`` for every non-blank record after the header.

        Records are given with as many cells as they have fields, whatever the header's
        width. A value under a blank header cell is refused (:func:`check_unnamed`).
        """
        max_rows = self._options.max_rows
        unnamed = self._unnamed
        while (record := self._next_record()) is not None:
            if self._row_number - self.header_row > max_rows:
                raise reject(
                    f"The file has more than {max_rows:,} rows (line {self._line}); the limit "
                    f"is {max_rows:,}.",
                    self._line,
                )
            cells = [field or None for field in record]
            if any(cells):
                if unnamed:
                    check_unnamed(cells, unnamed, self._row_number)
                yield self._row_number, cells

    def close(self) -> None:
        """Nothing to release: the caller owns the stream."""


def allow_field_size(size: int) -> None:
    """Let the csv module read fields of ``size`` characters; the reader enforces its limit.

    The csv limit is process-wide, so it is only ever raised, never lowered, here.
    """
    if csv.field_size_limit() < size + 1:
        csv.field_size_limit(size + 1)
