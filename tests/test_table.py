"""``table_stream``: rows as CSV, NDJSON or one JSON array, read back by real readers.

The app runs in a real uvicorn on loopback (in this process, or in its own for the memory
test); the rows come from Python and from a real PostgreSQL (``tests/pg_peer.py``) through
SQLAlchemy's asyncpg driver and asyncpg itself.
"""

from __future__ import annotations

import asyncio
import csv
import decimal
import io
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import duckdb
import httpx
import pandas
import pytest
from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faststream_kit import StreamError, table_stream
from faststream_kit.testing import LiveServer

from .apps.table_app import TABLE_SQL
from .conftest import uvicorn_process
from .pg_peer import PostgresServer, postgres_server_fixture

__all__ = ["postgres_server_fixture"]  # the fixture, for pytest

MiB = 1024 * 1024

# Commas, quotes, line breaks of every kind, leading and trailing blanks, non-ASCII text
# (accents, CJK, an emoji outside the BMP) and a field that looks like a number.
TRICKY = [
    {"id": "1", "text": "plain", "note": "comma, inside"},
    {"id": "2", "text": 'she said "hi"', "note": '"quoted at both ends"'},
    {"id": "3", "text": "line one\nline two", "note": "crlf\r\ninside"},
    {"id": "4", "text": "Crème brûlée, 日本語", "note": "emoji 🎉 and ß"},
    {"id": "5", "text": "  padded  ", "note": "007"},
    {"id": "6", "text": "a\rb", "note": ";semi;colons;"},
]
COLUMNS = ["id", "text", "note"]


def _route(make: Callable[[Request], Response]) -> Starlette:
    return Starlette(routes=[Route("/t", make, methods=["GET", "HEAD"])])


# --- 4. CSV that three independent readers read back ------------------------------------------


@pytest.fixture(scope="module")
def tricky_csv() -> Iterator[LiveServer]:
    def export(request: Request) -> Response:
        bom = request.query_params.get("bom") == "1"
        return table_stream(TRICKY, format="csv", bom=bom, filename="tricky.csv")

    with LiveServer(_route(export)) as server:
        yield server


@pytest.mark.parametrize("bom", ["0", "1"])
def test_csv_reads_back_in_python_csv(tricky_csv: LiveServer, bom: str) -> None:
    body = httpx.get(f"{tricky_csv.url}/t?bom={bom}").content
    assert body.startswith(b"\xef\xbb\xbf") == (bom == "1")
    text = body.decode("utf-8-sig")
    # RFC 4180 §2: CRLF ends every record; a line break inside a quoted field stays as it is.
    assert text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert rows == TRICKY


@pytest.mark.parametrize("bom", ["0", "1"])
def test_csv_reads_back_in_duckdb(tricky_csv: LiveServer, bom: str, tmp_path: Path) -> None:
    path = tmp_path / "tricky.csv"
    path.write_bytes(httpx.get(f"{tricky_csv.url}/t?bom={bom}").content)
    relation = duckdb.sql(
        f"select * from read_csv('{path}', header = true, all_varchar = true, quote = '\"')"
    )
    assert relation.columns == COLUMNS
    assert [dict(zip(COLUMNS, row, strict=True)) for row in relation.fetchall()] == TRICKY


@pytest.mark.parametrize("bom", ["0", "1"])
def test_csv_reads_back_in_pandas(tricky_csv: LiveServer, bom: str) -> None:
    body = httpx.get(f"{tricky_csv.url}/t?bom={bom}").content
    frame = pandas.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False)
    assert list(frame.columns) == COLUMNS
    assert frame.to_dict(orient="records") == TRICKY


def test_csv_has_the_headers_of_every_stream_and_an_rfc_6266_filename(
    tricky_csv: LiveServer,
) -> None:
    response = httpx.get(f"{tricky_csv.url}/t")
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="tricky.csv"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["cache-control"] == "no-cache, no-transform"


# --- every kind of row, every format ----------------------------------------------------------


@dataclass
class Point:
    x: int
    label: str


class PointModel(BaseModel):
    x: int
    label: str


class PointTuple(NamedTuple):
    x: int
    label: str


async def _async_rows(rows: list[Any]) -> AsyncIterator[Any]:
    for row in rows:
        yield row


ROW_KINDS: dict[str, tuple[list[Any], list[str] | None]] = {
    "dict": ([{"x": 1, "label": "a"}, {"x": 2, "label": "b"}], None),
    "tuple-with-columns": ([(1, "a"), (2, "b")], ["x", "label"]),
    "named-tuple": ([PointTuple(1, "a"), PointTuple(2, "b")], None),
    "dataclass": ([Point(1, "a"), Point(2, "b")], None),
    "pydantic": ([PointModel(x=1, label="a"), PointModel(x=2, label="b")], None),
}

EXPECTED = {
    "csv": b"x,label\r\n1,a\r\n2,b\r\n",
    "ndjson": b'{"x":1,"label":"a"}\n{"x":2,"label":"b"}\n',
    "json": b'[\n{"x":1,"label":"a"},\n{"x":2,"label":"b"}\n]\n',
}


@pytest.fixture(scope="module")
def kinds_server() -> Iterator[LiveServer]:
    def export(request: Request) -> Response:
        rows, columns = ROW_KINDS[request.query_params["kind"]]
        source: Any = _async_rows(rows) if request.query_params["sync"] == "0" else iter(rows)
        return table_stream(source, format=request.query_params["format"], columns=columns)

    with LiveServer(_route(export)) as server:
        yield server


@pytest.mark.parametrize("sync", ["1", "0"], ids=["sync", "async"])
@pytest.mark.parametrize("format", ["csv", "ndjson", "json"])
@pytest.mark.parametrize("kind", list(ROW_KINDS))
def test_each_kind_of_row_is_written_by_its_columns(
    kinds_server: LiveServer, kind: str, format: str, sync: str
) -> None:
    response = httpx.get(f"{kinds_server.url}/t", params=dict(kind=kind, format=format, sync=sync))
    assert response.status_code == 200
    assert response.content == EXPECTED[format]


def test_columns_choose_and_order_the_fields() -> None:
    rows = [{"a": 1, "b": 2, "c": 3}, {"a": 4, "c": 6}]  # "b" missing: an empty field / null

    def export(request: Request) -> Response:
        return table_stream(rows, format=request.query_params["format"], columns=["c", "b"])

    with LiveServer(_route(export)) as server:
        assert httpx.get(f"{server.url}/t?format=csv").content == b"c,b\r\n3,2\r\n6,\r\n"
        assert httpx.get(f"{server.url}/t?format=ndjson").content == (
            b'{"c":3,"b":2}\n{"c":6,"b":null}\n'
        )


@pytest.mark.parametrize(
    ("format", "columns", "body"),
    [
        ("json", None, b"[]\n"),
        ("ndjson", None, b""),
        ("csv", None, b""),
        ("csv", ["x", "label"], b"x,label\r\n"),  # the header alone: the columns are known
    ],
)
def test_no_rows_is_still_a_valid_document(
    format: str, columns: list[str] | None, body: bytes
) -> None:
    def export(request: Request) -> Response:
        return table_stream(_async_rows([]), format=format, columns=columns)  # type: ignore[arg-type]

    with LiveServer(_route(export)) as server:
        response = httpx.get(f"{server.url}/t")
    assert response.status_code == 200
    assert response.content == body


# --- the error contract -----------------------------------------------------------------------


async def _failing_rows(count: int, exc: Exception) -> AsyncIterator[dict[str, int]]:
    for i in range(count):
        yield {"i": i}
        await asyncio.sleep(0)
    raise exc


@pytest.fixture(scope="module")
def failing_server() -> Iterator[LiveServer]:
    def export(request: Request) -> Response:
        count = int(request.query_params["rows"])
        error = StreamError("the export broke", status_code=503, type="unavailable")
        return table_stream(_failing_rows(count, error), format=request.query_params["format"])

    with LiveServer(_route(export)) as server:
        yield server


@pytest.mark.parametrize("format", ["csv", "ndjson", "json"])
def test_a_failure_before_the_first_row_is_an_http_error(
    failing_server: LiveServer, format: str
) -> None:
    response = httpx.get(f"{failing_server.url}/t", params={"rows": 0, "format": format})
    assert response.status_code == 503
    assert response.json() == {"error": {"type": "unavailable", "message": "the export broke"}}


def test_ndjson_ends_with_the_library_error_line_after_rows(failing_server: LiveServer) -> None:
    response = httpx.get(f"{failing_server.url}/t", params={"rows": 3, "format": "ndjson"})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[:3] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert lines[3:] == [
        {"type": "error", "error": {"type": "unavailable", "message": "the export broke"}}
    ]


@pytest.mark.parametrize("format", ["csv", "json"])
def test_csv_and_json_abort_so_a_broken_export_never_looks_complete(
    failing_server: LiveServer, format: str
) -> None:
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "GET", f"{failing_server.url}/t", params={"rows": 3, "format": format}
        ) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += chunk
    assert received.count(b'"i"' if format == "json" else b"\r\n") >= 3
    if format == "json":
        assert not received.rstrip().endswith(b"]")
        with pytest.raises(json.JSONDecodeError):
            json.loads(received)


def test_json_keepalive_is_whitespace_a_json_parser_skips() -> None:
    async def slow_rows() -> AsyncIterator[dict[str, int]]:
        yield {"i": 1}
        await asyncio.sleep(0.5)  # the source is slow: the keepalive fills the gap
        yield {"i": 2}

    def export(request: Request) -> Response:
        return table_stream(slow_rows(), format="json", keepalive=0.1)

    with LiveServer(_route(export)) as server:
        body = httpx.get(f"{server.url}/t").content
    assert body.startswith(b"[\n{")
    assert b"}\n\n" in body  # at least one keepalive between the rows
    assert json.loads(body) == [{"i": 1}, {"i": 2}]


# --- disconnect and HEAD close the rows -------------------------------------------------------


def test_a_client_that_leaves_closes_a_sync_row_generator_in_its_thread() -> None:
    closed = threading.Event()
    threads: list[str] = []

    def rows() -> Iterator[tuple[int]]:
        try:
            i = 0
            while True:
                i += 1
                yield (i,)
        finally:
            threads.append(threading.current_thread().name)
            closed.set()

    def export(request: Request) -> Response:
        return table_stream(rows(), columns=["i"])

    with LiveServer(_route(export)) as server, httpx.stream("GET", f"{server.url}/t") as response:
        next(response.iter_raw())
        response.close()
        assert closed.wait(5), "the row generator was not closed"
    assert threads == ["faststream-kit-source"]


def test_a_client_that_leaves_stops_rows_that_never_make_the_loop_wait() -> None:
    # Rows already in memory: the source never waits, and writes to a client that is gone
    # return at once; the disconnect must still be noticed.
    closed = threading.Event()

    async def rows() -> AsyncIterator[tuple[int, str]]:
        try:
            i = 0
            while True:
                i += 1
                yield (i, "an in-memory row that never awaits anything")
        finally:
            closed.set()

    def export(request: Request) -> Response:
        return table_stream(rows(), columns=["i", "text"])

    with LiveServer(_route(export)) as server, httpx.stream("GET", f"{server.url}/t") as response:
        next(response.iter_raw())
        response.close()
        assert closed.wait(5), "the rows were not closed after the client left"


def test_head_answers_without_reading_the_rows_and_closes_them() -> None:
    closed = threading.Event()

    class Result:
        """A result object with a close() that must be called, like a DB cursor's."""

        def __aiter__(self) -> Result:
            return self

        async def __anext__(self) -> tuple[int]:
            raise AssertionError("HEAD read a row")

        async def close(self) -> None:
            closed.set()

    def export(request: Request) -> Response:
        return table_stream(Result(), columns=["i"], filename="x.csv")

    with LiveServer(_route(export)) as server:
        response = httpx.head(f"{server.url}/t")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="x.csv"'
    assert closed.is_set()


# --- arguments are checked before any I/O -----------------------------------------------------


def _generator() -> Iterator[dict[str, int]]:
    yield {"a": 1}


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"rows": "a,b"}, TypeError, r"^rows must be a sync or async iterable of rows"),
        ({"rows": _generator}, TypeError, r"^rows is a generator function; call it"),
        ({"format": "xml"}, ValueError, r"^format must be one of 'csv', 'ndjson', 'json'"),
        ({"columns": "abc"}, TypeError, r"^columns must be a sequence of column names"),
        ({"columns": [1]}, TypeError, r"^columns must hold str names"),
        ({"columns": []}, ValueError, r"^columns must name at least one column"),
        ({"columns": ["a", "a"]}, ValueError, r"^columns must be unique, got \['a'\]"),
        ({"filename": b"x.csv"}, TypeError, r"^filename must be a str or None"),
        ({"bom": 1}, TypeError, r"^bom must be True or False"),
        ({"format": "json", "bom": True}, ValueError, r"^bom is for CSV only"),
        ({"header_row": None}, TypeError, r"^header_row must be True or False"),
        ({"keepalive": 5.0}, ValueError, r"^keepalive must be None for CSV"),
        ({"keepalive": -1}, ValueError, r"^keepalive "),
        ({"send_timeout": 0}, ValueError, r"^send_timeout "),
        ({"headers": {"a": 1}}, TypeError, r"^headers\["),
        ({"status_code": 99}, ValueError, r"^status_code "),
    ],
)
def test_a_bad_argument_is_refused_naming_it(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments = {"rows": [], **arguments}
    with pytest.raises(error, match=message):
        table_stream(**arguments)


# --- PostgreSQL: a million rows, and a client that leaves -------------------------------------

MILLION = 1_000_000


@pytest.fixture(scope="module")
def export_rows(postgres: PostgresServer) -> PostgresServer:
    """The database with the table ``export_rows`` of a million rows."""
    postgres.psql(TABLE_SQL)
    return postgres


@pytest.fixture(scope="module")
def table_app(export_rows: PostgresServer) -> Iterator[Any]:
    postgres = export_rows
    env = {"FSK_PG_URL": postgres.sqlalchemy_url, "FSK_PG_DSN": postgres.dsn}
    with uvicorn_process("table_app:app", env=env) as app:
        yield app


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _lines(chunks: Iterator[bytes], end: bytes) -> Iterator[str]:
    """Complete lines of a streamed body, each with its ``end``, as they arrive."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(end)
        for line in complete:
            yield (line + end).decode()
    assert pending == b"", f"the body ends inside a line: {pending[-80:]!r}"


def _check_csv(lines: Iterator[str]) -> int:
    reader = csv.reader(lines)
    assert next(reader) == ["id", "name", "amount"]
    count = 0
    for count, (id, name, amount) in enumerate(reader, 1):
        assert (int(id), name, float(amount)) == (count, f'row {count}, "quoted"', count * 0.5)
    return count


def _check_ndjson(lines: Iterator[str]) -> int:
    count = 0
    for count, line in enumerate(lines, 1):
        row = json.loads(line)
        assert row == {"id": count, "name": f'row {count}, "quoted"', "amount": row["amount"]}
        assert float(row["amount"]) == count * 0.5  # numeric: a Decimal, sent as a string
    return count


def _check_json(lines: Iterator[str]) -> int:
    # One row per line: "[", then each object followed by "," but the last, then "]". Each
    # line parsed on its own, with this shape checked, is the whole array parsed.
    assert next(lines) == "[\n"
    count = 0
    last = False
    for line in lines:
        if line == "]\n":
            break
        assert not last, "a row after the last one"
        last = not line.endswith(",\n")
        row = json.loads(line if last else line[:-2])
        count += 1
        assert (row["id"], row["name"]) == (count, f'row {count}, "quoted"')
    else:
        raise AssertionError("the array never closes")
    assert last, "the last row is followed by a comma"
    assert next(lines, None) is None
    return count


CHECKS = {
    "csv": (_check_csv, b"\r\n"),
    "ndjson": (_check_ndjson, b"\n"),
    "json": (_check_json, b"\n"),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("format", ["csv", "ndjson", "json"])
def test_a_million_postgres_rows_stream_at_once_in_flat_memory(table_app: Any, format: str) -> None:
    check, end = CHECKS[format]
    with httpx.Client(timeout=60) as client:
        for _ in range(3):  # warm up imports, the pool's connection and the statement cache
            warm = client.get(f"{table_app.url}/export", params={"rows": 2000, "format": format})
            assert warm.status_code == 200
        baseline = peak = _rss_bytes(table_app.process.pid)
        samples = 0

        def sampled(chunks: Iterator[bytes]) -> Iterator[bytes]:
            nonlocal peak, samples
            for i, chunk in enumerate(chunks):
                if i % 64 == 0:
                    peak = max(peak, _rss_bytes(table_app.process.pid))
                    samples += 1
                yield chunk

        started = time.perf_counter()
        params = {"rows": MILLION, "format": format}
        with client.stream("GET", f"{table_app.url}/export", params=params) as response:
            assert response.status_code == 200
            assert response.headers["content-disposition"] == (
                f'attachment; filename="export.{format}"'
            )
            raw = response.iter_raw()
            first = next(raw)
            first_bytes = time.perf_counter() - started
            count = check(_lines(sampled(itertools.chain([first], raw)), end))
    growth = (peak - baseline) / MiB
    print(f"{format}: first bytes after {first_bytes * 1000:.0f} ms, RSS +{growth:.1f} MiB")
    assert count == MILLION
    assert first_bytes <= 0.100, f"first bytes after {first_bytes * 1000:.0f} ms"
    assert samples > 10
    assert growth <= 64, f"RSS grew by {growth:.1f} MiB"


def test_clients_that_leave_at_once_leave_every_pooled_connection_usable(table_app: Any) -> None:
    # Leaving right after the first chunk catches the server inside a fetch: the read it
    # waits in must be cancelled, not abandoned, or the pooled connection stays mid-command
    # ("another operation is in progress") and a later export fails on it.
    with httpx.Client(timeout=30) as client:
        for attempt in range(12):
            rows = MILLION if attempt % 2 else 2000  # ends mid-result, or near its end
            with client.stream("GET", f"{table_app.url}/export", params={"rows": rows}) as response:
                next(response.iter_raw())
                response.close()
        for _ in range(10):  # more than the pool's five connections
            response = client.get(f"{table_app.url}/export", params={"rows": 3000})
            assert response.status_code == 200, response.text
            assert response.content.count(b"\r\n") == 3000 + 1


BUSY_SQL = """
    select count(*) from pg_stat_activity
    where query like '%fsk-table-export%' and pid <> pg_backend_pid()
    and state in ('active', 'idle in transaction', 'idle in transaction (aborted)')
"""
"""Backends still working on an export: running it, or holding its cursor open."""


@pytest.fixture
def busy_backends(postgres: PostgresServer) -> Iterator[Callable[[], int]]:
    """Counts :data:`BUSY_SQL` over one open asyncpg connection: a poll takes about a
    millisecond, so the time the query took to go is measured, not the poll's own."""
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(postgres.dsn))
    yield lambda: int(loop.run_until_complete(conn.fetchval(BUSY_SQL)))
    loop.run_until_complete(conn.close())
    loop.close()


@pytest.mark.parametrize("route", ["/export", "/export-asyncpg"])
def test_a_client_that_leaves_ends_the_query(
    table_app: Any, busy_backends: Callable[[], int], route: str
) -> None:
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", f"{table_app.url}{route}", params={"rows": MILLION}) as response:
            # next(), not a for loop: leaving a for loop over iter_raw() closes the connection.
            raw = response.iter_raw()
            received = 0
            while received < 1000:
                received += next(raw).count(b"\n")
            assert busy_backends() == 1  # the query is there while the client reads
            response.close()  # the client leaves after the first 1,000 rows
            left = time.perf_counter()
        while busy_backends() and time.perf_counter() - left < 5:
            time.sleep(0.01)  # polling the database, not waiting for time to pass
        gone_after = time.perf_counter() - left
    print(f"{route}: the query was gone {gone_after * 1000:.0f} ms after the client left")
    assert gone_after <= 0.5, f"the query was still there after {gone_after * 1000:.0f} ms"


# --- PostgreSQL rows of every driver shape ----------------------------------------------------


class Base(DeclarativeBase):
    pass


class ExportRow(Base):
    __tablename__ = "export_rows"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    amount: Mapped[decimal.Decimal]


THREE_ROWS_CSV = (
    b"id,name,amount\r\n"
    b'1,"row 1, ""quoted""",0.5\r\n'
    b'2,"row 2, ""quoted""",1.0\r\n'
    b'3,"row 3, ""quoted""",1.5\r\n'
)
THREE_ROWS_JSON = [  # numeric: a Decimal, every digit kept, as a string
    {"id": i, "name": f'row {i}, "quoted"', "amount": amount}
    for i, amount in ((1, "0.5"), (2, "1.0"), (3, "1.5"))
]


@pytest.fixture(scope="module")
def driver_server(export_rows: PostgresServer) -> Iterator[LiveServer]:
    postgres = export_rows
    engine = create_async_engine(postgres.sqlalchemy_url)
    sql = "select id, name, amount from export_rows where id <= 3"

    async def sqlalchemy_result(request: Request) -> Response:
        # The AsyncResult itself: read a partition at a time; the route owns the connection.
        conn = await engine.connect()
        result = await conn.stream(text(sql))
        format: Any = request.query_params["format"]
        return table_stream(result, format=format, background=BackgroundTask(conn.close))

    async def orm_objects(request: Request) -> Response:
        async def rows() -> AsyncIterator[ExportRow]:
            async with AsyncSession(engine) as session:
                result = await session.stream_scalars(
                    select(ExportRow).where(ExportRow.id <= 3).order_by(ExportRow.id)
                )
                async for row in result:
                    yield row

        return table_stream(rows(), format=request.query_params["format"])  # type: ignore[arg-type]

    async def asyncpg_records(request: Request) -> Response:
        async def rows() -> AsyncIterator[Any]:
            conn = await asyncpg.connect(postgres.dsn)
            try:
                async with conn.transaction():
                    async for record in conn.cursor(sql):
                        yield record
            finally:
                await conn.close()

        return table_stream(rows(), format=request.query_params["format"])  # type: ignore[arg-type]

    one_connection = create_async_engine(postgres.sqlalchemy_url, pool_size=1, max_overflow=0)

    async def documented_pattern(request: Request) -> Response:
        async def rows() -> AsyncIterator[Any]:
            async with one_connection.connect() as conn:
                count = int(request.query_params.get("rows", MILLION))
                query = text("select id, name from export_rows where id <= :count")
                result = await conn.stream(query, {"count": count})
                async for part in result.partitions(1000):
                    for row in part:
                        yield row

        return table_stream(rows())

    app = Starlette(
        routes=[
            Route("/one-connection", documented_pattern),
            Route("/sqlalchemy", sqlalchemy_result),
            Route("/orm", orm_objects),
            Route("/asyncpg", asyncpg_records),
        ]
    )
    with LiveServer(app) as server:
        yield server
    asyncio.run(engine.dispose())
    asyncio.run(one_connection.dispose())


def test_a_client_that_leaves_gives_back_a_usable_pooled_connection(
    driver_server: LiveServer,
) -> None:
    # One pooled connection: were it left mid-read or broken by the disconnect, the next
    # export would wait for it or fail.
    with httpx.Client(timeout=30) as client:
        for _ in range(5):
            with client.stream("GET", f"{driver_server.url}/one-connection") as response:
                raw = response.iter_raw()
                next(raw)
                next(raw)
                response.close()
        response = client.get(f"{driver_server.url}/one-connection", params={"rows": 10_000})
    assert response.status_code == 200
    assert response.content.count(b"\r\n") == 10_000 + 1


@pytest.mark.parametrize("route", ["/sqlalchemy", "/orm", "/asyncpg"])
def test_postgres_rows_of_each_driver_shape_are_written_by_name(
    driver_server: LiveServer, route: str
) -> None:
    csv_body = httpx.get(f"{driver_server.url}{route}", params={"format": "csv"}).content
    assert csv_body == THREE_ROWS_CSV
    response = httpx.get(f"{driver_server.url}{route}", params={"format": "json"})
    assert response.json() == THREE_ROWS_JSON
