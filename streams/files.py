"""JSONL file backends (plain or ``.gz``): the embedded pipeline's source and sinks."""

from __future__ import annotations

import gzip
from itertools import islice
from pathlib import Path
from typing import IO, cast

from streams.decode import dead_letter_json
from streams.records import Channel, OutputRecord, SourceRecord, new_source_record
from streams.sink import Sink
from streams.source import Source


class _GzipOwningFile(gzip.GzipFile):
    """A GzipFile that also closes the file under it."""

    def __init__(self, raw: IO[bytes], mode: str) -> None:
        # No file name and mtime=0 in the header keep gzip output byte-identical between runs and paths.
        super().__init__(filename="", mode=mode, fileobj=raw, mtime=0)
        self.raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.raw.close()


def open_binary(path: Path, mode: str) -> IO[bytes]:
    """Open a file for bytes (``"r"`` or ``"w"``), through gzip when the name ends in ``.gz``."""
    raw = open(path, mode + "b")  # noqa: SIM115 - the returned handle owns it
    if path.suffix != ".gz":
        return raw
    return cast(IO[bytes], _GzipOwningFile(raw, mode + "b"))


class JsonlFileSource(Source):
    """Reads a JSONL file line by line; the position of a record is its 1-based line number.

    Blank lines are not records and are skipped (but still counted as lines).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self._total = path.stat().st_size
        self._reader = open_binary(path, "r")
        self._raw = self._reader.raw if isinstance(self._reader, _GzipOwningFile) else self._reader
        self._line = 0
        self._eof = False

    def poll(self, max_records: int) -> list[SourceRecord]:
        records: list[SourceRecord] = []
        line_number = self._line
        for line in islice(self._reader, max_records):
            line_number += 1
            value = line.rstrip(b"\r\n")
            if value and not value.isspace():  # a blank line is no record
                records.append(new_source_record((value, 0, line_number, None)))
        self._eof = line_number - self._line < max_records
        self._line = line_number
        return records

    @property
    def exhausted(self) -> bool:
        return self._eof

    def progress(self) -> tuple[int, int | None]:
        return self._raw.tell(), self._total

    @property
    def lines_read(self) -> int:
        return self._line

    def close(self) -> None:
        self._reader.close()


class JsonlFileSink(Sink):
    """Writes each kept channel's records as lines of its own file."""

    def __init__(self, paths: dict[Channel, Path]) -> None:
        self._files: dict[Channel, IO[bytes]] = {}
        for channel, path in paths.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            self._files[channel] = open_binary(path, "w")
        self._kept = frozenset(paths)

    def channels(self) -> frozenset[Channel]:
        return self._kept

    def add(self, record: OutputRecord) -> None:
        handle = self._files.get(record.channel)
        if handle is None or record.value is None:
            return
        handle.write(dead_letter_json(record) if record.channel is Channel.DEAD_LETTERS else record.value)
        handle.write(b"\n")

    def flush(self) -> None:
        for handle in self._files.values():
            handle.flush()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
