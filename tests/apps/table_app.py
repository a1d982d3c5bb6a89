"""``table_stream`` over PostgreSQL, served in its own process (its RSS is its own).

``FSK_PG_URL`` is the SQLAlchemy URL (``postgresql+asyncpg://...``), ``FSK_PG_DSN`` the plain
one for asyncpg. Every query carries the comment ``MARKER`` so that the test can find it in
``pg_stat_activity``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faststream_kit import table_stream

MARKER = "fsk-table-export"
TABLE_SQL = (
    "create table if not exists export_rows as select i as id, "
    "'row ' || i || ', \"quoted\"' as name, i * 0.5 as amount "
    "from generate_series(1, 1000000) as i"
)
"""Run by the test before the app starts. A table, not ``generate_series`` in the query: a
set-returning function in ``FROM`` is computed in full before its first row comes out."""

QUERY = text(f"select /* {MARKER} */ id, name, amount from export_rows where id <= :count")
ASYNCPG_QUERY = str(QUERY).replace(":count", "$1")

engine = create_async_engine(os.environ.get("FSK_PG_URL", "postgresql+asyncpg://"))


async def export(request: Request) -> Response:
    """The documented pattern: the generator owns the connection, a partition at a time."""
    count = int(request.query_params.get("rows", "1000000"))
    format: Any = request.query_params.get("format", "csv")

    async def rows() -> AsyncIterator[Any]:
        async with engine.connect() as conn:
            result = await conn.stream(QUERY, {"count": count})
            async for part in result.partitions(1000):
                for row in part:
                    yield row

    return table_stream(rows(), format=format, filename=f"export.{format}")


async def export_asyncpg(request: Request) -> Response:
    """An asyncpg cursor, in a transaction the generator owns."""
    count = int(request.query_params.get("rows", "1000000"))

    async def rows() -> AsyncIterator[Any]:
        conn = await asyncpg.connect(os.environ["FSK_PG_DSN"])
        try:
            async with conn.transaction():
                async for record in conn.cursor(ASYNCPG_QUERY, count, prefetch=1000):
                    yield record
        finally:
            await conn.close()

    return table_stream(rows(), format="ndjson")


app = Starlette(routes=[Route("/export", export), Route("/export-asyncpg", export_asyncpg)])
