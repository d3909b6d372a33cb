"""The byte stream of a direct (typed) COPY, checked on its way to the server.

A typed ``COPY`` takes more spellings than the loader accepts: PostgreSQL reads ``2026-10-05 10:00`` as a
time in the session's zone, and ``Jan 5 2026``, ``epoch`` or ``24:00:00`` as timestamps. The loader refuses
those (a zone-less time is never guessed), and a typed column no longer shows how a value was spelled. So
this stream looks at every value of the typed columns (timestamp, date, boolean, integer) as it passes, in
this process, which checks the next chunk while the server parses the ones already sent (the socket's
buffers let the two overlap on two cores): it costs little wall time as long as it keeps pace. It vouches
for a block only when every such value is one the text path accepts (same expressions: ``TS_RE``,
``DATE_RE``, ``INT_RE``, true/false); otherwise it raises, the COPY aborts, and the loader takes the file
through its text path, which names each refused row. It never accepts a value the text path refuses; it
may refuse values the text path accepts (then only time is lost).

Speed: no Python object per value in the common case. A block is cut at a record boundary; without quotes
the offsets of its separators (numpy) give every field, with quotes the ``csv`` module parses it. Each
typed column is checked as fixed-width byte matrices (one per value length): the digit-blind shape must be
one ISO shape, whose digit fields are then range-checked column-wise. Other shapes are checked value by
value with the regex.
"""

from __future__ import annotations

import csv
import io
import re
import zlib
from typing import IO, NoReturn

from slm_platform.canonical import BOOL, DATE, INT, SMALLINT, TSTZ, EntitySpec

CHECKED_TYPES = (TSTZ, DATE, BOOL, INT, SMALLINT)
DIGITS = b"0123456789"
_DIGIT_ZERO = bytes.maketrans(DIGITS, b"0" * 10)
# Digit-blind ISO shapes the text path's regexes accept, with the digit fields to range-check.
_TS_SHAPE = re.compile(
    rb"(?P<y>0000)-(?P<mo>00)-(?P<d>00)[Tt ](?P<h>00):(?P<mi>00)(?::(?P<s>00)(?:\.0+)?)?"
    rb"(?:[Zz]|[+-](?P<oh>00)(?::?(?P<om>00))?)"
)
_DATE_SHAPE = re.compile(rb"(?P<y>0000)-(?P<mo>00)-(?P<d>00)")
# (first, last) allowed value of each two-digit field; the year only needs a first digit of 1-9.
_RANGES = {
    "mo": (1, 12),
    "d": (1, 31),
    "h": (0, 23),
    "mi": (0, 59),
    "s": (0, 59),
    "oh": (0, 15),
    "om": (0, 59),
}


class ScanRefused(Exception):
    """A block holds a value (or a layout) this stream cannot vouch for; the text path must decide."""


def _body(regex: str) -> bytes:
    return regex.removeprefix("^").removesuffix("$").encode()


class CheckedCsvStream:
    """File-like ``read`` for ``copy_expert``: passes the CSV bytes through unchanged and checks them."""

    def __init__(
        self, fh: IO[bytes], columns: list[str], spec: EntitySpec, ts_re: str, date_re: str, int_re: str
    ):
        self.fh = fh
        self.width = len(columns)
        self.checks = [
            (i, c, spec.type_of(c)) for i, c in enumerate(columns) if spec.type_of(c) in CHECKED_TYPES
        ]
        self.value_re = {
            TSTZ: re.compile(_body(ts_re)),
            DATE: re.compile(_body(date_re)),
            INT: re.compile(_body(int_re)),
            SMALLINT: re.compile(_body(int_re)),
        }
        self.carry = b""

    # -- stream -----------------------------------------------------------------------------------------

    def read(self, size: int = -1) -> bytes:
        try:
            chunk = self.fh.read(size if size and size > 0 else 1 << 20)
        except (OSError, EOFError, zlib.error) as exc:
            self._refuse(f"cannot read: {exc}")
        data = self.carry + chunk
        cut = self._record_end(data) if chunk else len(data)
        block, self.carry = data[:cut], data[cut:]
        if block:
            self._check(block)
        return chunk

    @staticmethod
    def _record_end(data: bytes) -> int:
        """Just past the last line break that ends a record (not inside a quoted field)."""
        pos = data.rfind(b"\n")
        if b'"' in data:
            while pos >= 0 and data.count(b'"', 0, pos) % 2:
                pos = data.rfind(b"\n", 0, pos)
        return pos + 1

    @staticmethod
    def _refuse(why: str) -> NoReturn:
        raise ScanRefused(why)

    # -- blocks -----------------------------------------------------------------------------------------

    def _check(self, block: bytes) -> None:
        import numpy as np  # only here: a load that never reaches a block does not pay for the import

        if b'"' in block:
            fields = self._quoted_fields(block)
        else:
            fields = self._plain_fields(block, np)
        for i, name, kind in self.checks:
            buf, starts, ends = fields(i)
            self._check_column(np, buf, starts, ends, name, kind)

    def _plain_fields(self, block: bytes, np):
        """Without quotes a field is exactly what lies between separators: their offsets, found once per
        block as arrays, give every field's (start, end) without a Python object per value."""
        if b"\r" in block:
            block = block.replace(b"\r\n", b"\n")  # a lone CR is refused by COPY itself
        if not block.endswith(b"\n"):
            block += b"\n"  # the last record of a file without a final line break
        buf = np.frombuffer(block, dtype=np.uint8)
        seps = np.flatnonzero((buf == 44) | (buf == 10))  # ',' and '\n'
        lines = block.count(b"\n")
        if len(seps) != lines * self.width or not (buf[seps[self.width - 1 :: self.width]] == 10).all():
            self._refuse("a record with another number of fields than the header")
        starts_all = np.concatenate(([0], seps[:-1] + 1))
        width = self.width
        return lambda i: (buf, starts_all[i::width], seps[i::width])

    def _quoted_fields(self, block: bytes):
        """Quotes: the csv module parses the block; each column's values are laid end to end."""
        import numpy as np

        try:
            rows = list(csv.reader(io.StringIO(block.decode("utf-8"), newline=""), strict=True))
        except (UnicodeDecodeError, csv.Error) as exc:
            self._refuse(f"CSV the scan cannot read: {exc}")
        if any(len(r) != self.width for r in rows):
            self._refuse("a record with another number of fields than the header")

        def column(i: int):
            values = [r[i].encode() for r in rows]
            lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
            ends = np.cumsum(lengths)
            return np.frombuffer(b"".join(values), dtype=np.uint8), ends - lengths, ends

        return column

    # -- columns ----------------------------------------------------------------------------------------

    def _check_column(self, np, buf, starts, ends, name: str, kind: str) -> None:
        lengths = ends - starts
        present = lengths > 0  # an empty field is null
        starts, lengths = starts[present], lengths[present]
        if not len(starts):
            return
        if kind in (INT, SMALLINT):
            digit = (buf >= 48) & (buf <= 57)
            other = np.concatenate(([0], np.cumsum(~digit)))
            if (other[starts + lengths] - other[starts]).any():  # a sign, a space…: value by value
                values = [buf[a : a + n].tobytes() for a, n in zip(starts, lengths, strict=True)]
                if not all(map(self.value_re[kind].fullmatch, values)):
                    self._refuse(f"{name}: a value that is not an integer")
            elif lengths.max() > 18:
                self._refuse(f"{name}: an integer of more than 18 digits")
            return
        for width in np.unique(lengths).tolist():  # fixed-width matrices, one per length
            grid = buf[starts[lengths == width][:, None] + np.arange(width)]
            if kind == BOOL:
                if width not in (4, 5):
                    self._refuse(f"{name}: a value other than true / false")
                word = np.frombuffer(b"true" if width == 4 else b"false", dtype=np.uint8)
                if not ((grid | 0x20) == word).all():  # | 0x20: ASCII lower case, no other byte maps there
                    self._refuse(f"{name}: a value other than true / false")
            else:
                self._check_times(np, grid, name, kind)

    def _check_times(self, np, grid, name: str, kind: str) -> None:
        digit = (grid >= 48) & (grid <= 57)
        shapes = np.where(digit, 48, grid)
        shape = shapes[0].tobytes()
        m = (_TS_SHAPE if kind == TSTZ else _DATE_SHAPE).fullmatch(shape)
        if m is None or not (shapes == shapes[0]).all():
            # Another shape than the first one's (Z and +02:00 of one length, say): value by value.
            if not all(map(self.value_re[kind].fullmatch, (row.tobytes() for row in grid))):
                self._refuse(f"{name}: a value the loader does not accept as a {kind}")
            return
        if not (grid[:, m.start("y")] > 48).all():
            self._refuse(f"{name}: a year before 1000")
        for field, (low, high) in _RANGES.items():
            # a date's shape has no time fields (asking for them raised, and every date column took the
            # text path); an optional field may be absent
            if field not in m.re.groupindex or m.group(field) is None:
                continue
            a = m.start(field)
            number = (grid[:, a].astype(np.int16) - 48) * 10 + (grid[:, a + 1].astype(np.int16) - 48)
            if number.min() < low or number.max() > high:
                self._refuse(f"{name}: a {field} field out of {low:02d}..{high:02d}")
