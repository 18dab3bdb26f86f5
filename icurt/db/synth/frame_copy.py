"""COPY a pandas frame into a PostgreSQL table as CSV that pyarrow writes in a background thread,
so that pyarrow's CSV writing overlaps PostgreSQL's parsing (synth's loader)."""

from __future__ import annotations

import io
import queue
import threading

import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.csv as pa_csv
from psycopg2 import sql

ROWS_PER_CSV_CHUNK = 500_000
COPY_READ_SIZE = 4 << 20


def copy_frame(cur, schema: str, table: str, frame: pd.DataFrame) -> int:
    """COPY `frame` (its columns, in order) into `schema`.`table` (new in this transaction); rows copied."""
    # FREEZE (the table is new in this transaction): later readers need not set hint bits page by page
    statement = sql.SQL("COPY {}.{} ({}) FROM STDIN WITH (FORMAT csv, FREEZE)").format(
        sql.Identifier(schema), sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, frame.columns)))
    with _CsvReader(frame) as reader:
        try:
            cur.copy_expert(statement, reader, size=COPY_READ_SIZE)
        except psycopg2.Error:
            if reader.error is not None:   # psycopg2 reports it as a cancelled COPY: raise the cause (Ctrl-C)
                raise reader.error from None
            raise
    return cur.rowcount


def _arrow(frame: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):  # categoricals → plain text for the CSV writer
            table = table.set_column(i, field.name, table.column(i).cast(field.type.value_type))
    return table


class _CsvReader(io.RawIOBase):
    """A file-like view of `frame` as CSV without header, written chunk by chunk in a thread so that
    pyarrow's CSV writing overlaps PostgreSQL's parsing."""

    def __init__(self, frame: pd.DataFrame):
        super().__init__()
        self._chunks: queue.Queue = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._buffer, self._offset, self._done = b"", 0, False
        self.error: BaseException | None = None   # what a read() raised (e.g. KeyboardInterrupt)
        self._thread = threading.Thread(target=self._produce, args=(frame,), daemon=True)
        self._thread.start()

    def _produce(self, frame: pd.DataFrame) -> None:
        try:
            for start in range(0, len(frame), ROWS_PER_CSV_CHUNK):
                sink = io.BytesIO()
                pa_csv.write_csv(_arrow(frame.iloc[start:start + ROWS_PER_CSV_CHUNK]), sink,
                                 pa_csv.WriteOptions(include_header=False))
                if not self._put(sink.getvalue()):
                    return
            self._put(None)
        except BaseException as exc:  # handed to the reading thread, which raises it
            self._put(exc)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._read(size)
        except BaseException as exc:
            self.error = exc
            raise

    def _read(self, size: int) -> bytes:
        while self._offset >= len(self._buffer):
            if self._done:
                return b""
            item = self._chunks.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                self._done = True
                return b""
            self._buffer, self._offset = item, 0
        end = len(self._buffer) if size is None or size < 0 else self._offset + size
        out = self._buffer[self._offset:end]
        self._offset += len(out)
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        super().close()
