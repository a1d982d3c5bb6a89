"""``table_stream``: rows of a query (or of anything) as CSV, NDJSON or one JSON array.

Rows are read as they come, encoded in batches of the rows that are ready at once, and
written through :class:`StreamResponse`, which brings the headers, the disconnect handling
(the row source is closed, so a database cursor and its query go away), the keepalives and
the error contract. Nothing holds more than one batch of rows.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import decimal
import enum
import inspect
import ipaddress
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from collections.abc import Sequence as SequenceABC
from operator import attrgetter, itemgetter
from typing import Any, Final, Literal

import anyio
from starlette.background import BackgroundTask
from starlette.requests import Request

from ._eager import EagerIterator
from ._http_fields import content_disposition
from ._names import KEEPALIVE, SEND_TIMEOUT, FormatKeepalive
from ._response import StreamResponse
from ._sse import _compact_json_encoder, _json_default
from ._validate import (
    check_background,
    check_bool,
    check_column_names,
    check_headers,
    check_limiter,
    check_request,
    check_status_code,
    check_str,
    one_of,
    optional_positive_seconds,
    stream_source,
)

__all__ = ["TableFormat", "table_stream"]

TableFormat = Literal["csv", "ndjson", "json"]
"""The wire formats of :func:`table_stream`."""

FORMATS: Final = ("csv", "ndjson", "json")

MEDIA_TYPES: Final[Mapping[str, str]] = {
    # RFC 4180 §3 registers text/csv; UTF-8 must be said, its default charset is US-ASCII.
    "csv": "text/csv; charset=utf-8",
    # The library's NDJSON type: the core gives it the NDJSON error line and keepalive.
    "ndjson": "application/x-ndjson",
    "json": "application/json",
}

JSON_KEEPALIVE: Final = b"\n"
"""Whitespace: RFC 8259 §2 allows it before, after and between the values of an array, and
every chunk of a JSON body ends between two values."""

BATCH_ROWS: Final = 512
"""The most rows encoded into one chunk. Only rows already available are batched: a row is
never held back waiting for the next one."""

_BOM: Final = "\ufeff"
_ROWS = (
    "a sync or async iterable of rows (dicts, tuples, dataclasses, pydantic models, "
    "SQLAlchemy rows, asyncpg records)"
)
_ROW_KINDS = (
    "a dict, a tuple or list (with columns), a named tuple, a dataclass, a pydantic model, "
    "a SQLAlchemy Row or mapped object, or an asyncpg Record"
)

Values = Callable[[Any], Iterable[Any]]
"""A row's values, in column order."""


def table_stream(
    rows: AsyncIterable[Any] | Iterable[Any],
    *,
    format: TableFormat = "csv",
    columns: SequenceABC[str] | None = None,
    filename: str | None = None,
    header_row: bool = True,
    bom: bool = False,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    background: BackgroundTask | None = None,
    keepalive: float | None = KEEPALIVE,
    send_timeout: float | None = SEND_TIMEOUT,
    idle_timeout: float | None = None,
    thread_limiter: anyio.CapacityLimiter | None = None,
    request: Request | None = None,
) -> StreamResponse:
    """Stream ``rows`` as CSV, NDJSON or one JSON array, without holding them in memory.

    ```python notest
    @app.get("/orders.csv")
    async def orders():
        async def rows():
            async with engine.connect() as conn:
                result = await conn.stream(select(orders_table))
                async for part in result.partitions(1000):
                    for row in part:
                        yield row
        return table_stream(rows(), filename="orders.csv")
    ```

    ``rows`` is a sync iterable (read in one worker thread of ``thread_limiter``) or an async
    one: a generator, SQLAlchemy's ``AsyncResult`` / ``AsyncScalarResult`` (from
    ``stream()`` / ``stream_scalars()``, read a partition at a time) or an asyncpg cursor.
    A row is a ``dict``, a ``tuple`` or ``list``, a named tuple, a dataclass, a pydantic
    model, a SQLAlchemy ``Row`` or mapped object, or an asyncpg ``Record``. ``columns``
    names the columns and their order; without it they are the first row's keys, fields or
    attributes (tuples have none: CSV without a header row, JSON arrays per row).

    ``format``:

    * ``"csv"`` (``text/csv; charset=utf-8``): RFC 4180, CRLF line ends, fields with a comma,
      quote or line break quoted, quotes doubled, a header row unless ``header_row=False``;
      ``None`` is an empty field, other values are written as ``str()`` writes them.
      ``bom=True`` starts the body with a UTF-8 byte order mark, so Excel reads it as UTF-8.
    * ``"ndjson"`` (``application/x-ndjson``): one JSON object per row and line.
    * ``"json"`` (``application/json``): one JSON array of row objects, ``[]`` when empty.

    In JSON, dates and times are ISO 8601 strings, ``Decimal``, ``UUID`` and IP addresses
    strings, enums their value. ``filename`` adds ``Content-Disposition: attachment``
    (RFC 6266, ``filename*`` for non-ASCII names).

    A failure before the first row becomes an HTTP error with a JSON body. After it, NDJSON
    ends with the library's error line; CSV and JSON abort the connection, so the client
    sees a broken transfer and (JSON) an array that never closes, never a complete-looking
    file. A client that leaves closes ``rows`` at once (``aclose()``/``close()``), which
    ends the query: close the connection or transaction in your generator's ``finally`` (or
    ``async with``). ``keepalive`` sends an empty line (NDJSON) or whitespace (JSON) while
    the query is silent; CSV has no such bytes and sends none.
    """
    stream_source("rows", rows, what=_ROWS)
    one_of("format", format, FORMATS)
    column_names = check_column_names("columns", columns)
    check_str("filename", filename, optional=True)
    check_bool("header_row", header_row)
    check_bool("bom", bom)
    if bom and format != "csv":
        raise ValueError("bom is for CSV only: JSON must not start with a byte order mark")
    check_status_code("status_code", status_code)
    check_headers("headers", headers)
    check_background("background", background)
    optional_positive_seconds("keepalive", keepalive)
    if format == "csv" and keepalive is not None and not isinstance(keepalive, FormatKeepalive):
        raise ValueError(
            "keepalive must be None for CSV: it has no bytes a reader would ignore "
            "(a blank line is a row to some readers)"
        )
    optional_positive_seconds("send_timeout", send_timeout)
    optional_positive_seconds("idle_timeout", idle_timeout)
    check_limiter("thread_limiter", thread_limiter)
    check_request("request", request)

    encoder = _TableEncoder(format, column_names, header_row=header_row, bom=bom)
    body: AsyncIterable[bytes] | Iterable[bytes]
    if isinstance(rows, AsyncIterable):
        body = _AsyncBody(rows, encoder)
    else:
        body = _SyncBody(rows, encoder)
    extra = dict(headers or {})
    if filename is not None and "content-disposition" not in {k.lower() for k in extra}:
        extra["Content-Disposition"] = content_disposition("attachment", filename)
    return StreamResponse(
        body,
        status_code=status_code,
        headers=extra,
        media_type=MEDIA_TYPES[format],
        background=background,
        keepalive=None if format == "csv" else keepalive,
        keepalive_frame=JSON_KEEPALIVE if format == "json" else None,
        send_timeout=send_timeout,
        idle_timeout=idle_timeout,
        thread_limiter=thread_limiter,
        request=request,
    )


# --- rows to values --------------------------------------------------------------------------


def _columns_of(row: Any) -> list[str] | None:
    """The column names a row carries, or ``None`` for a plain tuple or list."""
    if isinstance(row, Mapping):
        return [str(key) for key in row]
    fields = getattr(row, "_fields", None)  # named tuples, SQLAlchemy Row
    if isinstance(fields, tuple):
        return list(fields)
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return [field.name for field in dataclasses.fields(row)]
    model_fields = getattr(type(row), "model_fields", None)  # pydantic v2
    if isinstance(model_fields, Mapping):
        return list(model_fields)
    mapper = getattr(type(row), "__mapper__", None)  # a SQLAlchemy mapped class
    if mapper is not None:
        return [attribute.key for attribute in mapper.column_attrs]
    if _is_asyncpg_record(row):
        return list(row.keys())
    if isinstance(row, tuple | list):
        return None
    raise TypeError(f"a row must be {_ROW_KINDS}, got {type(row).__name__}")


def _is_asyncpg_record(row: Any) -> bool:
    return type(row).__module__.startswith("asyncpg") and callable(getattr(row, "keys", None))


def _values_getter(row: Any, columns: list[str] | None) -> Values:
    """How to read rows of ``row``'s type as values in ``columns`` order."""
    if columns is None:  # plain tuples: the values are the row
        if _columns_of(row) is not None or not isinstance(row, tuple | list):
            raise TypeError(
                f"rows without columns must all be tuples or lists, got {type(row).__name__}; "
                "pass columns=..."
            )
        return _as_is
    own = _columns_of(row)
    if isinstance(row, Mapping):
        return _mapping_getter(columns)
    if own is None:
        return _sequence_getter(len(columns))
    if own == columns and not _has_attributes_only(row):
        return _as_is  # a Row, named tuple or Record iterates its values in this order
    missing = [name for name in columns if name not in own]
    if missing:
        raise ValueError(f"columns {missing} are not in the rows ({type(row).__name__} has {own})")
    if _has_attributes_only(row):
        return _picker(attrgetter, columns)
    if _is_asyncpg_record(row):
        return _picker(itemgetter, columns)  # a Record is indexed by name too
    return _picker(itemgetter, [own.index(name) for name in columns])


def _has_attributes_only(row: Any) -> bool:
    """Dataclasses, pydantic models and mapped objects: values are attributes, not items."""
    return (
        not isinstance(row, Mapping | tuple | list)
        and not _is_asyncpg_record(row)
        and (getattr(row, "_fields", None) is None)
    )


def _as_is(row: Any) -> Iterable[Any]:
    return row  # type: ignore[no-any-return]


def _picker(make: Callable[..., Callable[[Any], Any]], keys: list[Any]) -> Values:
    """``make(*keys)`` (``itemgetter``, ``attrgetter``: C speed), always returning a tuple."""
    if len(keys) == 1:
        get = make(keys[0])  # one key: the value itself, not a 1-tuple
        return lambda row: (get(row),)
    many: Values = make(*keys)
    return many


def _mapping_getter(columns: list[str]) -> Values:
    pick = itemgetter(*columns)
    single = len(columns) == 1

    def values(row: Any) -> Iterable[Any]:
        try:
            found = pick(row)
        except KeyError:  # a missing key is an empty field, as csv.DictWriter writes it
            return [row.get(name) for name in columns]
        return (found,) if single else found

    return values


def _sequence_getter(count: int) -> Values:
    def values(row: Any) -> Iterable[Any]:
        if len(row) != count:
            raise ValueError(f"a row has {len(row)} values for {count} columns")
        return row  # type: ignore[no-any-return]

    return values


# --- values to bytes -------------------------------------------------------------------------


class _Line:
    """A file for ``csv.writer`` whose ``write`` returns the line: ``writerow()`` returns
    what ``write`` returns, so each row becomes a ``str`` without an ``io.StringIO``."""

    __slots__ = ()

    @staticmethod
    def write(line: str) -> str:
        return line


def _database_value(value: object) -> Any:
    """JSON for the values a database driver returns that JSON has no type for."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    # Decimal as a string keeps every digit (a float would round); pydantic does the same.
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return _json_default(value)  # dataclasses and pydantic models, else TypeError


_row_json = _compact_json_encoder(_database_value)


class _TableEncoder:
    """Turns batches of rows into the bytes of one format; keeps the columns it learnt."""

    def __init__(
        self, format: str, columns: list[str] | None, *, header_row: bool, bom: bool
    ) -> None:
        self._format = format
        self._columns = columns
        self._objects_as_given = columns is None  # dict rows go out as they are in JSON
        self._header_row = header_row
        self._bom = bom
        self._getters: dict[type, Values] = {}
        self._started = False
        self._writerow = csv.writer(_Line(), lineterminator="\r\n").writerow

    def _values(self, row: Any) -> Iterable[Any]:
        get = self._getters.get(type(row))
        if get is None:
            if not self._started and self._columns is None:
                self._columns = _columns_of(row)
            get = self._getters[type(row)] = _values_getter(row, self._columns)
        return get(row)

    def _start(self) -> str:
        self._started = True
        if self._format == "csv":
            start = _BOM if self._bom else ""
            if self._header_row and self._columns is not None:
                start += self._writerow(self._columns)
            return start
        return "[\n" if self._format == "json" else ""

    def encode(self, rows: list[Any]) -> bytes:
        """``rows`` (at least one) as the next chunk."""
        if not self._started:
            self._values(rows[0])  # learn the columns before the header is written
            start = self._start()
        elif self._format == "json":
            start = ",\n"
        else:
            start = ""
        if self._format == "csv":
            writerow, values = self._writerow, self._values
            return (start + "".join([writerow(values(row)) for row in rows])).encode()
        objects = self._objects(rows)
        if self._format == "json":
            return (start + ",\n".join(map(_row_json, objects))).encode()
        return ("\n".join(map(_row_json, objects)) + "\n").encode()

    def _objects(self, rows: list[Any]) -> Iterator[Any]:
        columns, values = self._columns, self._values
        for row in rows:
            if columns is None:
                yield list(values(row))
            elif self._objects_as_given and type(row) is dict:
                yield row
            else:
                yield dict(zip(columns, values(row), strict=True))

    def end(self) -> bytes:
        """The last bytes: the end of the JSON array; for no rows, a CSV's header alone
        (when ``columns`` were given) or an empty JSON array."""
        if self._format == "json":
            return b"\n]\n" if self._started else b"[]\n"
        return b"" if self._started else self._start().encode()


# --- the row sources -------------------------------------------------------------------------


class _SyncBody:
    """A sync row source as encoded chunks, one per row: the core's worker thread reads it
    and sends the rows it has read at once in one write, so a slow ``next()`` never holds
    rows back. ``close()`` closes the rows, also when they were never read (a ``HEAD``)."""

    def __init__(self, rows: Iterable[Any], encoder: _TableEncoder) -> None:
        self._rows = rows
        self._encoder = encoder
        self._iterator: Iterator[Any] | None = None

    def __iter__(self) -> Iterator[bytes]:
        encoder = self._encoder
        self._iterator = iterator = iter(self._rows)
        for row in iterator:
            yield encoder.encode([row])
        yield encoder.end()

    def close(self) -> None:
        for source in (self._iterator, self._rows):
            close = getattr(source, "close", None)
            if callable(close):
                close()
            if self._iterator is self._rows:
                break


class _AsyncBody(AsyncIterator[bytes]):
    """An async row source as encoded chunks: each holds the rows that were ready at once
    (SQLAlchemy results: one partition). ``aclose()`` closes the rows, also when they were
    never read (a ``HEAD``)."""

    def __init__(self, rows: AsyncIterable[Any], encoder: _TableEncoder) -> None:
        self._rows = rows
        self._encoder = encoder
        self._partitions: AsyncIterator[list[Any]] | None = None
        self._ready: EagerIterator[Any] | None = None
        partitions = getattr(rows, "partitions", None)
        if type(rows).__module__.startswith("sqlalchemy.") and callable(partitions):
            # One greenlet switch per partition instead of one per row: ~6x faster
            # (measured on PostgreSQL: 200,000 rows in 1.3 s instead of 8.1 s).
            self._partitions = partitions(BATCH_ROWS)
        else:
            self._ready = EagerIterator(rows)
        self._chunks = self._encode()

    def __anext__(self) -> Any:
        return self._chunks.__anext__()

    async def _encode(self) -> AsyncGenerator[bytes, None]:
        encoder = self._encoder
        if self._partitions is not None:
            async for batch in self._partitions:
                yield encoder.encode(batch)
        else:
            ready = self._ready
            assert ready is not None
            async for row in ready:
                batch = [row]
                batch += ready.take_ready(BATCH_ROWS - 1)
                yield encoder.encode(batch)
        # Rows that never make us wait (a buffered cursor, a list) still let the event loop
        # see a client leave: the response gives it a turn every few writes.
        yield encoder.end()

    async def aclose(self) -> None:
        """Close the encoder, then the rows: a step of theirs kept by the eager reader is
        closed first (an async generator cannot be closed while a step of it runs)."""
        try:
            await self._chunks.aclose()
        finally:
            await self._close_rows()

    async def _close_rows(self) -> None:
        try:
            if self._ready is not None:
                await self._ready.aclose()  # the kept step, then the rows' own aclose()
            elif self._partitions is not None:
                await self._partitions.aclose()  # type: ignore[attr-defined]
        finally:
            # SQLAlchemy's async results have an async close(), which closes the cursor.
            close = getattr(self._rows, "close", None)
            if not hasattr(self._rows, "aclose") and callable(close):
                closed = close()
                if inspect.isawaitable(closed):
                    await closed
