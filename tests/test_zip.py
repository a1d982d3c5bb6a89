"""``zip_stream`` over real sockets: uvicorn serves the app, httpx downloads, and the archive
is read back by Python's ``zipfile`` and by ``unzip -t`` (Info-ZIP, the real tool). S3
members come from SeaweedFS and moto (tests/s3_peers.py) through aiobotocore and boto3.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

import anyio
import httpx
import pytest
from fastapi import FastAPI, Query, Request
from starlette.responses import Response

from faststream_kit import S3Object, ZipMember, zip_stream
from faststream_kit.testing import LiveServer

from .conftest import free_port, need_peer, stop_process, wait_for_port
from .s3_peers import (
    ClientKind,
    S3Peer,
    moto_s3_fixture,  # noqa: F401  (fixtures: seaweedfs, moto_s3, s3_peer)
    s3_peer_fixture,  # noqa: F401
    seaweedfs_fixture,  # noqa: F401
)

MiB = 1 << 20
GiB = 1 << 30
BUCKET = "faststream-kit-zip"
KINDS: list[ClientKind] = ["aiobotocore", "boto3"]
ROOT = Path(__file__).resolve().parent.parent
SMALL_KEYS = {f"docs/{i}.bin": os.urandom(i * 300_000 + 17) for i in range(4)}
"""Four objects of 17 B to ~900 KiB: some one read, some several."""
LARGE_KEY = "large.bin"  # 24 MiB: a download the client can leave in the middle of
LARGE = os.urandom(MiB) * 24


def unzip_binary() -> str:
    path = shutil.which("unzip")
    need_peer(path is not None, "Info-ZIP unzip is not installed (apt-get install unzip)")
    assert path is not None
    return path


def unzip_test(path: Path) -> str:
    """``unzip -t``: every member decompressed and its CRC-32 checked by the real tool."""
    result = subprocess.run(
        [unzip_binary(), "-t", str(path)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No errors detected" in result.stdout, result.stdout
    return result.stdout


# --- the S3 objects and the app --------------------------------------------------------------

_uploaded: set[str] = set()
_upload_lock = threading.Lock()


def upload_small_objects(peer: S3Peer) -> None:
    with _upload_lock:
        if peer.endpoint_url in _uploaded:
            return
        client = peer.sync_client()
        client.create_bucket(Bucket=BUCKET)
        for key, data in {**SMALL_KEYS, LARGE_KEY: LARGE}.items():
            client.put_object(Bucket=BUCKET, Key=key, Body=data)
        client.close()
        _uploaded.add(peer.endpoint_url)


@dataclass
class BodySpy:
    """An SDK body that records when it is closed (and how many bodies are open at once)."""

    body: Any
    spies: Spies
    closed: threading.Event = field(default_factory=threading.Event)

    def close(self) -> Any:
        if not self.closed.is_set():
            self.closed.set()
            with self.spies.lock:
                self.spies.open_now -= 1
        return self.body.close()


class AsyncBodySpy(BodySpy):
    async def read(self, amount: int) -> bytes:
        data: bytes = await self.body.read(amount)
        return data


class SyncBodySpy(BodySpy):
    def read(self, amount: int) -> bytes:
        data: bytes = self.body.read(amount)
        return data


class Spies:
    """Wraps the app's S3 client: every body it hands out, and the most open at once."""

    def __init__(self) -> None:
        self.bodies: list[BodySpy] = []
        self.lock = threading.Lock()
        self.open_now = 0
        self.most_open = 0

    def add(self, found: dict[str, Any], spy_class: type[BodySpy]) -> dict[str, Any]:
        spy = spy_class(found["Body"], self)
        with self.lock:
            self.bodies.append(spy)
            self.open_now += 1
            self.most_open = max(self.most_open, self.open_now)
        return {**found, "Body": spy}

    def wrap(self, client: Any) -> Any:
        spies = self

        class AsyncClient:
            async def get_object(self, **params: Any) -> dict[str, Any]:
                return spies.add(await client.get_object(**params), AsyncBodySpy)

        class SyncClient:
            def get_object(self, **params: Any) -> dict[str, Any]:
                return spies.add(client.get_object(**params), SyncBodySpy)

        return AsyncClient() if hasattr(client, "__aenter__") else SyncClient()


def make_app(peer: S3Peer, kind: ClientKind, spies: Spies | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if kind == "aiobotocore":
            async with peer.async_client() as client:
                app.state.s3 = spies.wrap(client) if spies else client
                yield
        else:
            client = peer.sync_client()
            app.state.s3 = spies.wrap(client) if spies else client
            yield
            client.close()

    app = FastAPI(lifespan=lifespan)

    @app.api_route("/objects.zip", methods=["GET", "HEAD"])
    async def objects(
        request: Request, key: Annotated[list[str], Query()], compress: bool = True
    ) -> Response:
        # The names come from the request: a bad one is the client's mistake, a 400.
        members = [
            ZipMember(name, S3Object(request.app.state.s3, BUCKET, name), compress=compress)
            for name in key
        ]
        return zip_stream(members, filename="objects.zip", untrusted_names=True, request=request)

    @app.get("/generated.zip")
    async def generated(mib: int, request: Request) -> Response:
        return zip_stream(
            [
                ZipMember("big.bin", repeated_block(mib), compress=False),
                ZipMember("after.txt", b"after the big one", compress=False),
            ],
            filename="generated.zip",
            request=request,
        )

    return app


BLOCK = hashlib.sha256(b"faststream-kit").digest() * (MiB // 32)  # 1 MiB, same in both processes


def repeated_block(mib: int) -> Iterator[bytes]:
    for _ in range(mib):
        yield BLOCK


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory tests.test_zip:app_from_env`` in a process of its own."""
    peer = S3Peer("env", os.environ["FASTSTREAM_KIT_S3_ENDPOINT"])
    return make_app(peer, "aiobotocore")


@pytest.fixture(scope="module", params=KINDS)
def spied(request: pytest.FixtureRequest, s3_peer: S3Peer) -> Iterator[tuple[str, Spies]]:
    upload_small_objects(s3_peer)
    spies = Spies()
    with LiveServer(make_app(s3_peer, request.param, spies)) as server:
        yield server.url, spies


def objects_url(url: str, keys: list[str], *, compress: bool = True) -> str:
    query = "&".join(f"key={k}" for k in keys)
    return f"{url}/objects.zip?{query}&compress={str(compress).lower()}"


def error_of(response: httpx.Response) -> dict[str, str]:
    assert response.headers["content-type"] == "application/json"
    error: dict[str, str] = response.json()["error"]
    return error


# --- the archive -----------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_s3_objects_arrive_intact_read_by_zipfile_and_unzip(
    spied: tuple[str, Spies], tmp_path: Path, compress: bool
) -> None:
    url, spies = spied
    keys = list(SMALL_KEYS)
    response = httpx.get(objects_url(url, keys, compress=compress), timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == 'attachment; filename="objects.zip"'
    assert response.headers["x-accel-buffering"] == "no"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.namelist() == keys
    for key in keys:
        assert archive.read(key) == SMALL_KEYS[key]
        # compress=False: deflate made of stored blocks (the CRC-32 is known only at the end)
        assert archive.getinfo(key).compress_type == zipfile.ZIP_DEFLATED
    path = tmp_path / "objects.zip"
    path.write_bytes(response.content)
    unzip_test(path)
    assert spies.most_open == 1, "members are fetched one at a time"
    assert all(body.closed.is_set() for body in spies.bodies[-len(keys) :])


def test_a_member_is_dated_by_the_objects_last_modified(
    spied: tuple[str, Spies], s3_peer: S3Peer
) -> None:
    url, _ = spied
    key = next(iter(SMALL_KEYS))
    client = s3_peer.sync_client()
    modified: datetime = client.head_object(Bucket=BUCKET, Key=key)["LastModified"]
    client.close()
    archive = zipfile.ZipFile(io.BytesIO(httpx.get(objects_url(url, [key]), timeout=30).content))
    utc = modified.astimezone(UTC)
    # MS-DOS time has 2-second steps (APPNOTE 4.4.6); the UT extra field holds the exact second.
    expected = (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second // 2 * 2)
    assert archive.getinfo(key).date_time == expected


def test_uncompressed_streamed_members_whatever_their_pieces(tmp_path: Path) -> None:
    """compress=False bodies of unknown CRC are deflate made of stored blocks: pieces of any
    size (empty, one byte, around the 64 KiB block limit, several MiB) read back intact, and
    a body of one-byte pieces does not cost 5 bytes of framing per piece."""
    sizes = [0, 1, 16383, 16384, 16385, 65535, 65536, 65537, 0, 131071, 3 * 2**20 + 7, 5]
    data = os.urandom(sum(sizes))

    def pieces() -> Iterator[bytes]:
        start = 0
        for size in sizes:
            yield data[start : start + size]
            start += size

    def bytes_one_by_one() -> Iterator[bytes]:
        return (bytes([byte]) for byte in data[:100_000])

    async def async_pieces() -> AsyncIterator[bytes]:
        for piece in pieces():
            yield piece

    app = FastAPI()

    @app.get("/stored.zip")
    async def stored() -> Response:
        return zip_stream(
            [
                ZipMember("pieces.bin", pieces(), compress=False),
                ZipMember("one-by-one.bin", bytes_one_by_one(), compress=False),
                ZipMember("async.bin", async_pieces(), compress=False),
                ZipMember("empty.bin", iter([b""]), compress=False),
            ],
            filename="stored.zip",
        )

    with LiveServer(app) as server:
        content = httpx.get(server.url + "/stored.zip", timeout=60).content
    archive = zipfile.ZipFile(io.BytesIO(content))
    assert archive.read("pieces.bin") == data
    assert archive.read("async.bin") == data
    assert archive.read("one-by-one.bin") == data[:100_000]
    assert archive.read("empty.bin") == b""
    one_by_one = archive.getinfo("one-by-one.bin")
    assert one_by_one.compress_type == zipfile.ZIP_DEFLATED
    assert one_by_one.compress_size < 100_000 + 100, one_by_one.compress_size
    path = tmp_path / "stored.zip"
    path.write_bytes(content)
    unzip_test(path)


def test_more_members_than_a_zip32_directory_counts(tmp_path: Path) -> None:
    """70,000 stored members (a ZIP32 central directory counts 65,535): ZIP64 records."""
    app = FastAPI()

    @app.get("/many.zip")
    async def many() -> Response:
        members = [ZipMember(f"{i}.txt", b"%d" % i, compress=False) for i in range(70_000)]
        return zip_stream(members, filename="many.zip")

    with LiveServer(app) as server:
        response = httpx.get(server.url + "/many.zip", timeout=120)
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert len(archive.infolist()) == 70_000
    assert archive.read("69999.txt") == b"69999"
    path = tmp_path / "many.zip"
    path.write_bytes(response.content)
    unzip_test(path)


def test_every_body_kind_and_both_methods(tmp_path: Path) -> None:
    async def letters() -> AsyncIterator[bytes]:
        for letter in b"abc":
            yield bytes([letter]) * 70_000

    app = FastAPI()

    @app.get("/mixed.zip")
    async def mixed() -> Response:
        return zip_stream(
            [
                ("hello.txt", b"hello"),
                ZipMember("lines/numbers.txt", (b"%d\n" % i for i in range(50_000))),
                ZipMember("letters.bin", letters(), compress=False),
                ZipMember("stored.bin", b"stored as it is", compress=False),
                ZipMember("Überblick/日本.txt", b"utf-8", modified=datetime(2001, 2, 3, 4, 5, 6)),
            ],
            filename="Übersicht 2024.zip",
        )

    with LiveServer(app) as server:
        response = httpx.get(server.url + "/mixed.zip")
    content = response.content
    # RFC 6266: an ASCII fallback, and the UTF-8 name in filename* (RFC 8187).
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"Ubersicht 2024.zip\"; filename*=UTF-8''%C3%9Cbersicht%202024.zip"
    )
    archive = zipfile.ZipFile(io.BytesIO(content))
    assert archive.read("hello.txt") == b"hello"
    assert archive.read("lines/numbers.txt") == b"".join(b"%d\n" % i for i in range(50_000))
    assert archive.read("letters.bin") == b"a" * 70_000 + b"b" * 70_000 + b"c" * 70_000
    stored = archive.getinfo("stored.bin")
    assert (stored.compress_type, archive.read("stored.bin")) == (0, b"stored as it is")
    named = archive.getinfo("Überblick/日本.txt")
    assert named.flag_bits & 0x800, "the UTF-8 flag (APPNOTE appendix D) is set"
    assert named.date_time == (2001, 2, 3, 4, 5, 6)
    path = tmp_path / "mixed.zip"
    path.write_bytes(content)
    unzip_test(path)


def test_head_sends_the_headers_and_fetches_nothing(spied: tuple[str, Spies]) -> None:
    url, spies = spied
    before = len(spies.bodies)
    response = httpx.head(objects_url(url, list(SMALL_KEYS)), timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.content == b""
    assert len(spies.bodies) == before


# --- names -----------------------------------------------------------------------------------

BAD_NAMES = [
    pytest.param("../escape.txt", "contains a '..' segment", id="dotdot"),
    pytest.param("a/../../escape.txt", "contains a '..' segment", id="inner-dotdot"),
    pytest.param("/etc/passwd", "is an absolute path", id="absolute"),
    pytest.param("C:/Windows/win.ini", "is an absolute path", id="drive"),
    pytest.param("a\\..\\escape.txt", "contains a backslash", id="backslash"),
    pytest.param("caf\udce9.txt", "is not valid UTF-8", id="invalid-utf8"),
    pytest.param("a\nb.txt", "contains a control character", id="newline"),
    pytest.param("", "is empty", id="empty"),
    pytest.param("dir/", "ends with '/'", id="directory"),
]


@pytest.mark.parametrize(("name", "problem"), BAD_NAMES)
def test_a_bad_name_from_code_is_a_value_error_naming_members(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=r"^members\[1\] name ") as raised:
        zip_stream([("fine.txt", b"x"), (name, b"y")], filename="a.zip")
    assert problem in str(raised.value)


def test_a_duplicate_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^members\[1\] name 'a.txt' is a duplicate"):
        zip_stream([("a.txt", b"x"), ZipMember("a.txt", b"y")], filename="a.zip")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("../escape.txt", id="dotdot"),
        pytest.param("/etc/passwd", id="absolute"),
        pytest.param("%2E%2E/escape.txt", id="encoded-dotdot"),
    ],
)
def test_a_bad_name_from_the_request_is_a_400_before_any_byte(
    spied: tuple[str, Spies], name: str
) -> None:
    url, spies = spied
    before = len(spies.bodies)
    key = next(iter(SMALL_KEYS))
    response = httpx.get(objects_url(url, [key, name]), timeout=30)
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "bad_request"
    assert "archive member name" in error["message"]
    assert len(spies.bodies) == before, "S3 was not asked for anything"


def test_an_invalid_utf8_name_from_the_request_is_a_400() -> None:
    app = FastAPI()

    @app.get("/named.zip")
    async def named(request: Request) -> Response:
        # The raw query's undecodable bytes kept as lone surrogates, as os.fsdecode keeps them.
        raw = unquote_to_bytes(request.scope["query_string"].partition(b"=")[2])
        name = raw.decode("utf-8", "surrogateescape")
        return zip_stream([(name, b"x")], filename="a.zip", untrusted_names=True)

    with LiveServer(app) as server:
        response = httpx.get(server.url + "/named.zip?name=caf%E9.txt")
    assert response.status_code == 400
    assert "is not valid UTF-8" in error_of(response)["message"]


def test_a_bad_name_from_a_generator_stops_the_archive_before_any_byte() -> None:
    app = FastAPI()

    def members(first: str) -> Iterator[tuple[str, bytes]]:
        yield first, b"x"

    @app.get("/lazy.zip")
    async def lazy(name: str, untrusted: bool) -> Response:
        return zip_stream(members(name), filename="a.zip", untrusted_names=untrusted)

    with LiveServer(app) as server:
        from_request = httpx.get(server.url + "/lazy.zip?name=../x&untrusted=true")
        from_code = httpx.get(server.url + "/lazy.zip?name=../x&untrusted=false")
    assert from_request.status_code == 400
    assert error_of(from_request)["type"] == "bad_request"
    assert from_code.status_code == 500  # the code's bug: logged, no detail sent
    assert error_of(from_code)["type"] == "server_error"


# --- failures --------------------------------------------------------------------------------


def test_a_missing_first_object_is_a_404_before_any_byte(spied: tuple[str, Spies]) -> None:
    url, _ = spied
    response = httpx.get(objects_url(url, ["missing.bin"]), timeout=30)
    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found"


@pytest.mark.parametrize("compress", [True, False])
def test_a_missing_later_object_aborts_the_archive_and_closes_every_body(
    spied: tuple[str, Spies], without_gc: None, compress: bool
) -> None:
    url, spies = spied
    before = len(spies.bodies)
    keys = [LARGE_KEY, "missing.bin"]
    with (
        httpx.stream("GET", objects_url(url, keys, compress=compress), timeout=30) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        assert response.status_code == 200
        for _ in response.iter_raw():
            pass
    opened = spies.bodies[before:]
    assert len(opened) == 1
    assert opened[0].closed.wait(5)


def test_a_failing_member_body_aborts_the_connection() -> None:
    app = FastAPI()

    def breaks() -> Iterator[bytes]:
        yield b"x" * MiB
        raise OSError("the disk went away")

    @app.get("/broken.zip")
    async def broken() -> Response:
        return zip_stream([("ok.bin", BLOCK), ("broken.bin", breaks())], filename="a.zip")

    received = bytearray()
    with (
        LiveServer(app) as server,
        httpx.stream("GET", server.url + "/broken.zip") as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        for chunk in response.iter_raw():
            received += chunk
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(received))


@pytest.mark.parametrize("compress", [True, False])
def test_a_client_that_leaves_closes_the_current_s3_body(
    spied: tuple[str, Spies], without_gc: None, compress: bool
) -> None:
    url, spies = spied
    before = len(spies.bodies)
    keys = [LARGE_KEY, *SMALL_KEYS]
    with httpx.stream("GET", objects_url(url, keys, compress=compress), timeout=30) as response:
        assert response.status_code == 200
        next(response.iter_raw())  # the first piece, then the client leaves
    opened = spies.bodies[before:]
    assert len(opened) == 1, "the members after the current one are never fetched"
    assert opened[0].closed.wait(5), "the S3 body was left open"


def test_a_client_that_leaves_closes_the_members_generator(without_gc: None) -> None:
    app = FastAPI()
    closed = threading.Event()

    def members() -> Iterator[tuple[str, Iterator[bytes]]]:
        try:
            yield "endless.bin", repeated_block(10**6)
        finally:
            closed.set()

    @app.get("/endless.zip")
    async def endless() -> Response:
        return zip_stream(members(), filename="endless.zip")

    with LiveServer(app) as server:
        with httpx.stream("GET", server.url + "/endless.zip") as response:
            next(response.iter_raw())
        # Deflate turns the endless block into almost nothing: the archive must notice the
        # client gone between the pieces it reads, not once a piece of output is done.
        assert closed.wait(5), "the members generator was left open"


def test_a_client_that_leaves_closes_an_async_member_body_that_stalled(without_gc: None) -> None:
    app = FastAPI()
    closed = threading.Event()

    async def stalls() -> AsyncIterator[bytes]:
        try:
            # Nothing, ever: the archive has sent the member's header and waits for this read
            # when the client leaves; the read is cancelled, and the generator closed.
            await asyncio.Event().wait()
            yield b""
        finally:
            closed.set()

    @app.get("/stalls.zip")
    async def route() -> Response:
        return zip_stream([ZipMember("stalls.bin", stalls(), compress=False)], filename="s.zip")

    with LiveServer(app) as server:
        with httpx.stream("GET", server.url + "/stalls.zip") as response:
            next(response.iter_raw())
        assert closed.wait(5), "the async body was left open"


def test_a_body_that_yields_no_bytes_aborts_the_archive_and_is_closed(without_gc: None) -> None:
    app = FastAPI()
    closed = threading.Event()

    async def mistaken() -> AsyncIterator[Any]:
        try:
            yield BLOCK
            yield "text, not bytes"
            yield BLOCK  # the archive reads about a MiB per visit to the event loop
            # The archive asked for this read ahead; it must be cancelled for the generator
            # to be closed.
            await asyncio.Event().wait()
        finally:
            closed.set()

    @app.get("/mistaken.zip")
    async def route() -> Response:
        return zip_stream([("ok.bin", BLOCK), ("bad.bin", mistaken())], filename="m.zip")

    with (
        LiveServer(app) as server,
        httpx.stream("GET", server.url + "/mistaken.zip") as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        assert response.status_code == 200
        for _ in response.iter_raw():
            pass
    assert closed.wait(5), "the async body was left open"


# --- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: zip_stream([], filename=""), ValueError, "filename must be a non-empty str"),
        (lambda: zip_stream([], filename="a.zip", compress_level=10), ValueError, "compress_level"),
        (lambda: zip_stream(b"x", filename="a.zip"), TypeError, "members must be"),
        (lambda: zip_stream(["a.txt"], filename="a.zip"), TypeError, r"members\[0\] must be"),
        (lambda: zip_stream([(1, b"x")], filename="a.zip"), TypeError, r"members\[0\] name must"),
        (lambda: zip_stream([("a", "text")], filename="a.zip"), TypeError, r"members\[0\] body"),
        (lambda: ZipMember("a", 5), TypeError, "body must be bytes, a sync or async iterable"),
        (lambda: ZipMember("a", b"", modified=datetime(1970, 1, 1)), ValueError, "modified"),
        (lambda: ZipMember("a", b"", compress=1), TypeError, "compress must be True or False"),
        (lambda: S3Object(object(), "b", "k"), TypeError, "client must be an aiobotocore"),
        (lambda: S3Object(None, "", "k"), ValueError, "bucket must be a non-empty str"),
    ],
)
def test_a_bad_argument_is_refused_in_the_call(call: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=f"^{message}"):
        call()


# --- size: 1 GiB from S3 and a 5 GiB member ---------------------------------------------------

OBJECTS = 100
OBJECT_BYTES = GiB // OBJECTS


def object_data(index: int) -> bytes:
    block = hashlib.sha256(b"%d" % index).digest() * (MiB // 32)
    return (block * (OBJECT_BYTES // MiB + 1))[:OBJECT_BYTES]


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _free_disk_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


@contextmanager
def app_process(endpoint_url: str) -> Iterator[tuple[str, int]]:
    """The app in a uvicorn process of its own, so its RSS is its own."""
    port = free_port()
    env = {**os.environ, "FASTSTREAM_KIT_S3_ENDPOINT": endpoint_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.test_zip:app_from_env",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        stop_process(process)


def download(url: str, path: Path, pid: int) -> int:
    """Save ``url`` to ``path`` with curl; return the server's peak RSS meanwhile.

    curl, not httpx: a GiB through a Python client here costs more CPU than the server
    spends, on the same two cores, and this measures the server.
    """
    curl = shutil.which("curl")
    need_peer(curl is not None, "curl is not installed")
    assert curl is not None
    command = [curl, "--silent", "--show-error", "--fail", "--output", str(path), url]
    with subprocess.Popen(command, stderr=subprocess.PIPE) as process:  # closes the pipe
        peak = _rss_bytes(pid)
        while True:
            try:
                process.wait(timeout=0.05)  # the sampling period, not a synchronisation
                break
            except subprocess.TimeoutExpired:
                peak = max(peak, _rss_bytes(pid))
        assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    return peak


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_1_gib_archive_of_100_s3_objects_is_intact_and_the_server_memory_flat(
    seaweedfs: S3Peer, tmp_path: Path
) -> None:
    assert _free_disk_bytes(tmp_path) > 3 * GiB, "not enough disk for a 1 GiB archive"
    phase = time.monotonic()
    upload_small_objects(seaweedfs)  # and the bucket
    client = seaweedfs.sync_client()
    keys = [f"gib/{index:03}.bin" for index in range(OBJECTS)]

    def upload(index: int) -> None:
        client.put_object(Bucket=BUCKET, Key=keys[index], Body=object_data(index))

    with ThreadPoolExecutor(4) as uploads:
        list(uploads.map(upload, range(OBJECTS)))
    client.close()
    print(f"uploaded: {time.monotonic() - phase:.1f} s")
    with app_process(seaweedfs.endpoint_url) as (url, pid):
        check_a_gib_from_s3(url, pid, keys, tmp_path)


def check_a_gib_from_s3(url: str, pid: int, keys: list[str], tmp_path: Path) -> None:
    warm = httpx.get(objects_url(url, list(SMALL_KEYS)[:1]), timeout=30)  # imports, the pool
    assert warm.status_code in (200, 404)
    baseline = _rss_bytes(pid)
    path = tmp_path / "gib.zip"
    try:
        started = time.monotonic()
        peak = download(objects_url(url, keys, compress=False), path, pid)
        grown = (peak - baseline) / MiB
        print(f"1 GiB from S3: {time.monotonic() - started:.1f} s, RSS +{grown:.1f} MiB")
        assert peak - baseline <= 64 * MiB, f"RSS grew by {(peak - baseline) / MiB:.1f} MiB"
        assert path.stat().st_size > GiB
        phase = time.monotonic()
        unzip_test(path)
        print(f"unzip -t: {time.monotonic() - phase:.1f} s")
        phase = time.monotonic()
        with zipfile.ZipFile(path) as archive:
            assert archive.namelist() == keys
            for index, key in enumerate(keys):
                # read() checks the CRC-32 too; the bytes are compared with what was stored.
                assert archive.read(key) == object_data(index), key
        print(f"zipfile: {time.monotonic() - phase:.1f} s")
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_5_gib_member_from_a_generator_makes_a_valid_zip64_archive(tmp_path: Path) -> None:
    assert _free_disk_bytes(tmp_path) > 8 * GiB, "not enough disk for a 5 GiB archive"
    path = tmp_path / "big.zip"
    # No S3 here: the client is made, never used.
    try:
        with app_process("http://127.0.0.1:9") as (url, pid):
            assert httpx.get(f"{url}/generated.zip?mib=4", timeout=30).status_code == 200
            baseline = _rss_bytes(pid)  # after a warm-up: imports, the worker thread
            started = time.monotonic()
            peak = download(f"{url}/generated.zip?mib={5 * 1024}", path, pid)
        grown = (peak - baseline) / MiB
        print(f"5 GiB generated: {time.monotonic() - started:.1f} s, RSS +{grown:.1f} MiB")
        assert grown <= 64, f"RSS grew by {grown:.1f} MiB"
        assert path.stat().st_size > 5 * GiB
        unzip_test(path)  # every byte of the big member, and its CRC-32
        with zipfile.ZipFile(path) as archive:  # the ZIP64 central directory
            big, after = archive.infolist()
            assert big.file_size == 5 * GiB
            assert after.header_offset > 0xFFFFFFFF, "the second member starts past 4 GiB"
            assert archive.read("after.txt") == b"after the big one"
        print(f"5 GiB checked: {time.monotonic() - started:.0f} s")
    finally:
        path.unlink(missing_ok=True)


def test_the_event_loop_is_the_one_that_reads_an_async_member() -> None:
    """An async body is read on the response's loop (aiobotocore's session belongs to it)."""
    app = FastAPI()
    loops: list[asyncio.AbstractEventLoop] = []

    async def body() -> AsyncIterator[bytes]:
        loops.append(asyncio.get_running_loop())
        yield b"x"

    @app.get("/a.zip")
    async def route() -> Response:
        loops.append(asyncio.get_running_loop())
        return zip_stream([("a", body())], filename="a.zip")

    with LiveServer(app) as server:
        assert httpx.get(server.url + "/a.zip").status_code == 200
    assert len(loops) == 2
    assert loops[0] is loops[1]


def test_async_uncompressed_members_need_no_worker_thread() -> None:
    """Members that need no CPU-heavy work (compress=False) from the event loop (aiobotocore,
    async iterables, small bytes) are zipped on the event loop: the archive flows while
    every worker thread token is taken."""
    app = FastAPI()
    busy = anyio.CapacityLimiter(1)

    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"async " * 50_000

    @app.get("/no-thread.zip")
    async def no_thread() -> Response:
        await busy.acquire_on_behalf_of(object())  # the only token, never given back
        members = [
            ZipMember("small.txt", b"small", compress=False),
            ZipMember("async.bin", pieces(), compress=False),
        ]
        return zip_stream(members, filename="a.zip", thread_limiter=busy)

    with LiveServer(app) as server:
        response = httpx.get(server.url + "/no-thread.zip", timeout=10)
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.read("small.txt") == b"small"
    assert archive.read("async.bin") == b"async " * 150_000
