"""Readers: turn a drop's file into (staging columns, a byte stream of CSV for ``COPY``).

CSV (plain or gzip) is streamed as it is after its header has been checked; JSON lines are turned into
CSV rows one chunk at a time (:class:`_JsonlAsCsv`). Python only ever holds one chunk of the stream.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from slm_platform.canonical import EntitySpec
from slm_platform.load.drop import near_miss, near_misses
from slm_platform.load.errors import LoadError

COPY_CHUNK = 1 << 20  # bytes per read of the source stream during COPY
BOM = b"\xef\xbb\xbf"


def _open(path: Path) -> IO[bytes]:
    try:
        return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    except OSError as exc:
        raise LoadError(f"{path}: cannot open: {exc}") from exc


@dataclass
class Staged:
    columns: list[str]  # staging column names in COPY order (spec columns keep their canonical name)
    stream: IO[bytes] | _JsonlAsCsv
    jsonl: bool
    # Staging has its _line column (JSONL: from the reader; CSV: see text_path._number_lines).
    numbered: bool = False


def _csv_header(path: Path, fh: IO[bytes], spec: EntitySpec) -> list[str]:
    try:
        first = fh.readline()
    except (OSError, EOFError, zlib.error) as exc:
        raise LoadError(f"{path}: cannot read: {exc}") from exc
    if first.startswith(BOM):
        first = first[len(BOM) :]
    if not first.strip():
        raise LoadError(f"{path}: empty file or empty header row (a CSV file needs a header)")
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(f"{path}: header is not UTF-8: {exc}") from exc
    header = next(csv.reader([text]))
    names: list[str] = []
    for i, raw_name in enumerate(header, start=1):
        name = raw_name.strip().lower()
        if name in spec.column_names and name not in names:
            names.append(name)
        elif raw_name and raw_name not in names and len(raw_name.encode()) <= 63 and raw_name != "_line":
            names.append(raw_name)  # extra column: kept in the staging row (and so in quarantine records)
        else:
            names.append(f"_extra_{i}")
    # An extra column named like a canonical one the header lacks is a misspelling, not an extra: its
    # values would silently read as null and the rows count as loaded. Refused by name.
    absent = [c for c in spec.column_names if c not in names]
    misspelt = [
        f"{raw_name!r} (did you mean {guess}?)"
        for raw_name, name in zip(header, names, strict=True)
        if name not in spec.column_names and (guess := near_miss(raw_name, absent))
    ]
    if misspelt:
        raise LoadError(
            f"{path}: unknown column(s) {', '.join(misspelt)} of {spec.name}: a misspelt column would read "
            f"as null; rename it (extra columns with other names are kept, never loaded)"
        )
    missing_key = [c for c in spec.key if c not in names]
    if missing_key:
        raise LoadError(
            f"{path}: header lacks key column(s) {', '.join(missing_key)} of {spec.name} "
            f"(header: {', '.join(header)})"
        )
    missing_req = [c for c in spec.required if c not in names]
    if missing_req:
        raise LoadError(
            f"{path}: header lacks required column(s) {', '.join(missing_req)} of {spec.name} "
            f"(header: {', '.join(header)})"
        )
    return names


class _JsonlAsCsv:
    """File-like object turning JSON lines into CSV rows for COPY, one chunk at a time.

    Columns: _line, _raw (the original object, as JSON text), _error (why the line is unusable), then
    the spec's columns. Blank lines are skipped; a line that is not a JSON object becomes a row with
    ``_error`` set, so that it is quarantined like any other bad row.
    """

    def __init__(self, path: Path, fh: IO[bytes], spec: EntitySpec):
        self.path, self.fh, self.columns = path, fh, spec.column_names
        self._known = set(self.columns)
        self._near: dict[str, list[str]] = {}  # unknown key -> canonical keys it may be a misspelling of
        self._lines = self._rows()

    def _misspelt_keys(self, obj: dict) -> str | None:
        """Why the object is refused if it holds a misspelt canonical key (its value would read as null)."""
        bad = []
        for k in obj.keys() - self._known:
            if k not in self._near:
                self._near[k] = near_misses(str(k), self.columns)
            guess = next((c for c in self._near[k] if c not in obj), None)
            if guess is not None:
                bad.append(f"{k!r} (did you mean {guess}?)")
        return f"unknown key(s) {', '.join(sorted(bad))}" if bad else None

    def _rows(self) -> Iterator[list[str | None]]:
        for lineno, raw in enumerate(self.fh, start=1):
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            if not raw.strip():
                continue
            error, obj = None, None
            try:
                text = raw.decode("utf-8").strip()
                obj = json.loads(text)
                if not isinstance(obj, dict):
                    error = f"not a JSON object: {type(obj).__name__}"
                elif "\\u0000" in text:
                    error = "NUL character in JSON"  # PostgreSQL text and jsonb cannot hold it
                elif not obj.keys() <= self._known:
                    error = self._misspelt_keys(obj)
            except UnicodeDecodeError as exc:
                text, error = raw.decode("utf-8", "replace").strip(), f"invalid UTF-8: {exc.reason}"
            except ValueError as exc:
                error = f"invalid JSON: {exc}"
            if error:
                # A well-formed object refused for its keys is quarantined as it came; anything else as text.
                kept = text if isinstance(obj, dict) and "\\u0000" not in text else None
                unparsed = kept or json.dumps({"_unparsed": text.replace("\x00", "")})
                yield [str(lineno), unparsed, error, *(None for _ in self.columns)]
                continue
            yield [str(lineno), text, None, *(_json_value(obj.get(c)) for c in self.columns)]

    def close(self) -> None:
        self.fh.close()

    def read(self, size: int = -1) -> bytes:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        target = size if size and size > 0 else COPY_CHUNK
        try:
            for row in self._lines:
                writer.writerow(row)
                if buf.tell() >= target:
                    break
        except (OSError, EOFError, zlib.error) as exc:
            raise LoadError(f"{self.path}: cannot read: {exc}") from exc
        return buf.getvalue().encode("utf-8")


def _json_value(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 250.0 is the integer 250
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def stage_source(path: Path, spec: EntitySpec) -> Staged:
    fh = _open(path)
    if ".jsonl" in path.name:
        columns = ["_line", "_raw", "_error", *spec.column_names]
        return Staged(columns, _JsonlAsCsv(path, fh, spec), jsonl=True, numbered=True)
    try:
        return Staged(_csv_header(path, fh, spec), fh, False)
    except BaseException:
        fh.close()
        raise
