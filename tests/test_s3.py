"""``s3_stream`` against real S3 servers (SeaweedFS and moto), with both SDKs, over sockets.

The app is FastAPI in uvicorn on 127.0.0.1 (:class:`LiveServer`); the clients are httpx,
curl-free, and headless Chromium. What the app's S3 client sent is observed with a botocore
``before-send`` hook on the real client, which sees the final request on its way out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from faststream_kit._http_fields import (
    ByteRange,
    EntityTag,
    content_disposition,
    parse_entity_tags,
    parse_range,
)
from faststream_kit.testing import LiveServer

from .s3_peers import (
    BUCKET,
    CLIENT_KINDS,
    SECRET_KEY,
    ClientKind,
    S3Peer,
    SentRequests,
    make_app,
    moto_s3_fixture,  # noqa: F401  (fixtures: seaweedfs, moto_s3, s3_peer)
    run_app_process,
    s3_peer_fixture,  # noqa: F401
    seaweedfs_fixture,  # noqa: F401
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

MiB = 1 << 20
BIG = "videos/big.mp4"  # 20 MiB, stored as video/mp4
CLIP = "clip.bin"  # 2 MiB, for ranges
PHOTO = "photo.jpg"  # stored without a Content-Type
HUGE = "huge.bin"  # 200 MiB, SeaweedFS only
KINDS: list[ClientKind] = list(CLIENT_KINDS)  # each SDK, and each on the fast path
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Stored:
    data: bytes
    etag: str
    last_modified: str  # as S3 sends it in HTTP-date form

    @property
    def size(self) -> int:
        return len(self.data)


_stored: dict[str, dict[str, Stored]] = {}
_stored_lock = threading.Lock()


def stored_objects(peer: S3Peer) -> dict[str, Stored]:
    """Upload the test objects once per server (re-uploading would change Last-Modified)."""
    with _stored_lock:
        if peer.endpoint_url not in _stored:
            client = peer.sync_client()
            client.create_bucket(Bucket=BUCKET)
            objects = {
                BIG: os.urandom(20 * MiB),
                CLIP: os.urandom(2 * MiB),
                PHOTO: os.urandom(4096),
            }
            found = {}
            for key, data in objects.items():
                extra = {"ContentType": "video/mp4"} if key == BIG else {}
                client.put_object(Bucket=BUCKET, Key=key, Body=data, **extra)
                head = client.head_object(Bucket=BUCKET, Key=key)
                found[key] = Stored(
                    data, head["ETag"], head["ResponseMetadata"]["HTTPHeaders"]["last-modified"]
                )
            _stored[peer.endpoint_url] = found
            client.close()
        return _stored[peer.endpoint_url]


@dataclass
class Served:
    url: str
    kind: ClientKind
    peer: S3Peer
    objects: dict[str, Stored]
    sent: SentRequests

    def object_url(self, key: str, **query: str) -> str:
        url = f"{self.url}/objects/{key}"
        if query:
            url += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        return url


@pytest.fixture(scope="module", params=KINDS)
def served(request: pytest.FixtureRequest, s3_peer: S3Peer) -> Iterator[Served]:
    """The app on each S3 server with each client kind."""
    kind: ClientKind = request.param
    objects = stored_objects(s3_peer)
    sent = SentRequests()
    with LiveServer(make_app(s3_peer, kind, sent=sent)) as server:
        yield Served(server.url, kind, s3_peer, objects, sent)


@pytest.fixture(autouse=True)
def fast_path_is_taken(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A ``+pyreqwest`` kind that quietly fell back to the SDK would pass every test here
    without testing the fast path: ``s3_stream`` logs when the SDK succeeded where the fast
    path failed, and that fails the test."""
    yield
    fallbacks = [r.getMessage() for r in caplog.records]
    fallbacks = [message for message in fallbacks if "the fast path failed" in message]
    assert fallbacks == []


def error_of(response: httpx.Response) -> dict[str, str]:
    assert response.headers["content-type"] == "application/json"
    body: dict[str, dict[str, str]] = response.json()
    return body["error"]


# --- 1. the whole object ---------------------------------------------------------------------


def test_20_mib_object_arrives_intact_with_file_server_headers(served: Served) -> None:
    big = served.objects[BIG]
    served.sent.take()
    digest = hashlib.sha256()
    with httpx.stream("GET", served.object_url(BIG), timeout=60) as response:
        for chunk in response.iter_raw():
            digest.update(chunk)
    assert response.status_code == 200
    assert digest.hexdigest() == hashlib.sha256(big.data).hexdigest()
    headers = response.headers
    assert headers["content-length"] == str(20 * MiB)
    assert headers["content-type"] == "video/mp4"
    assert headers["etag"] == big.etag
    assert headers["last-modified"] == big.last_modified
    assert headers["accept-ranges"] == "bytes"
    assert "content-disposition" not in headers
    assert served.sent.take() == [("GetObject", None)]


def test_content_type_is_guessed_from_the_key_when_the_object_has_none(served: Served) -> None:
    response = httpx.get(served.object_url(PHOTO))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content == served.objects[PHOTO].data


# --- 2. ranges -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-1023", 0, 1023),
        ("bytes=1048576-", 1048576, 2 * MiB - 1),
        ("bytes=-100", 2 * MiB - 100, 2 * MiB - 1),
    ],
    ids=["first-KiB", "from-1-MiB", "last-100"],
)
def test_one_range_is_a_206_fetched_from_s3_with_that_range(
    served: Served, range_header: str, start: int, end: int
) -> None:
    clip = served.objects[CLIP]
    served.sent.take()
    response = httpx.get(served.object_url(CLIP), headers={"Range": range_header})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/{clip.size}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.content == clip.data[start : end + 1]
    assert served.sent.take() == [("GetObject", range_header)]


def test_range_past_the_end_is_416_with_the_object_length(served: Served) -> None:
    clip = served.objects[CLIP]
    served.sent.take()
    response = httpx.get(served.object_url(CLIP), headers={"Range": f"bytes={clip.size}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{clip.size}"
    assert error_of(response)["type"] == "range_not_satisfiable"
    assert served.sent.take()[0] == ("GetObject", f"bytes={clip.size}-")


def test_several_ranges_are_answered_with_the_whole_object(served: Served) -> None:
    clip = served.objects[CLIP]
    served.sent.take()
    response = httpx.get(served.object_url(CLIP), headers={"Range": "bytes=0-1, 5-6"})
    assert response.status_code == 200
    assert "content-range" not in response.headers
    assert response.content == clip.data
    assert served.sent.take() == [("GetObject", None)]


def test_if_range_with_a_stale_etag_sends_the_whole_object(served: Served) -> None:
    clip = served.objects[CLIP]
    response = httpx.get(
        served.object_url(CLIP), headers={"Range": "bytes=0-1023", "If-Range": '"stale"'}
    )
    assert response.status_code == 200
    assert "content-range" not in response.headers
    assert response.content == clip.data


@pytest.mark.parametrize("validator", ["etag", "last_modified"])
def test_if_range_with_the_current_validator_serves_the_range(
    served: Served, validator: str
) -> None:
    clip = served.objects[CLIP]
    response = httpx.get(
        served.object_url(CLIP),
        headers={"Range": "bytes=0-1023", "If-Range": getattr(clip, validator)},
    )
    assert response.status_code == 206
    assert response.content == clip.data[:1024]


# --- 3. conditional GET, HEAD, errors --------------------------------------------------------


def test_if_none_match_with_the_current_etag_is_a_304_without_body(served: Served) -> None:
    clip = served.objects[CLIP]
    served.sent.take()
    response = httpx.get(served.object_url(CLIP), headers={"If-None-Match": clip.etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == clip.etag
    # S3 evaluated the condition itself: one GetObject, no body fetched to throw away.
    assert served.sent.take() == [("GetObject", None)]


def test_if_modified_since_the_last_modification_is_a_304(served: Served) -> None:
    clip = served.objects[CLIP]
    response = httpx.get(served.object_url(CLIP), headers={"If-Modified-Since": clip.last_modified})
    assert response.status_code == 304
    assert response.content == b""


def test_if_match_with_a_wrong_etag_is_a_412(served: Served) -> None:
    response = httpx.get(served.object_url(CLIP), headers={"If-Match": '"not-the-etag"'})
    assert response.status_code == 412
    assert error_of(response)["type"] == "precondition_failed"


def test_if_unmodified_since_before_the_upload_is_a_412(served: Served) -> None:
    response = httpx.get(
        served.object_url(CLIP), headers={"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}
    )
    assert response.status_code == 412


@pytest.mark.parametrize(
    ("header", "value", "status"),
    [
        ("If-None-Match", "*", 304),
        ("If-None-Match", '"other", {etag}', 304),
        ("If-None-Match", "W/{etag}", 304),
        ("If-None-Match", '"other", "another"', 200),
        ("If-Match", '"other", {etag}', 200),
        ("If-Match", "W/{etag}", 412),
        ("If-Match", "*", 200),
    ],
)
def test_etag_lists_star_and_weak_tags_follow_rfc_9110(
    served: Served, header: str, value: str, status: int
) -> None:
    clip = served.objects[CLIP]
    response = httpx.get(served.object_url(CLIP), headers={header: value.format(etag=clip.etag)})
    assert response.status_code == status


def test_head_is_the_headers_of_head_object_and_no_body(served: Served) -> None:
    clip = served.objects[CLIP]
    served.sent.take()
    response = httpx.head(served.object_url(CLIP))
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(clip.size)
    assert response.headers["etag"] == clip.etag
    assert response.headers["accept-ranges"] == "bytes"
    assert served.sent.take() == [("HeadObject", None)]


def test_head_with_a_range_is_the_206_headers(served: Served) -> None:
    clip = served.objects[CLIP]
    response = httpx.head(served.object_url(CLIP), headers={"Range": "bytes=-10"})
    assert response.status_code == 206
    assert (
        response.headers["content-range"] == f"bytes {clip.size - 10}-{clip.size - 1}/{clip.size}"
    )
    assert response.headers["content-length"] == "10"
    unsatisfiable = httpx.head(served.object_url(CLIP), headers={"Range": f"bytes={clip.size}-"})
    assert unsatisfiable.status_code == 416


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_missing_key_is_a_404(served: Served, method: str) -> None:
    response = httpx.request(method, served.object_url("no/such/key.txt"))
    assert response.status_code == 404
    if method == "GET":
        assert error_of(response) == {"type": "not_found", "message": "No such object."}


def test_missing_bucket_is_a_404(served: Served) -> None:
    response = httpx.get(served.url + "/objects/key.txt?bucket=faststream-kit-missing")
    assert response.status_code == 404
    assert error_of(response)["type"] == "not_found"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_wrong_credentials_are_a_502_auth_error_that_names_no_secret(
    seaweedfs: S3Peer, kind: ClientKind, method: str
) -> None:
    # moto's server accepts any signature; SeaweedFS checks SigV4 like AWS.
    stored_objects(seaweedfs)
    wrong = seaweedfs.with_secret("wrong-secret-Zx81Qp")
    with LiveServer(make_app(wrong, kind)) as server:
        response = httpx.request(method, f"{server.url}/objects/{CLIP}")
    # A HEAD error has no body, so S3 gives no code that tells a refused signature from a
    # denied object: it stays a 403. A GET's SignatureDoesNotMatch is the server's fault.
    assert response.status_code == (502 if method == "GET" else 403)
    for secret in ("wrong-secret-Zx81Qp", SECRET_KEY, seaweedfs.access_key):
        assert secret not in response.text
        assert secret not in str(response.headers)
    if method == "GET":
        assert error_of(response) == {
            "type": "upstream_auth_error",
            "message": "The object store refused this server's credentials.",
        }


MALFORMED: list[tuple[dict[str, str], int]] = [
    ({"Range": "bytes=abc"}, 200),
    ({"Range": "bytes=5-2"}, 200),
    ({"Range": "pages=0-5"}, 200),
    ({"Range": "bytes="}, 200),
    ({"Range": "bytes=--1"}, 200),
    ({"Range": "bytes=0-1023,x"}, 200),
    ({"Range": "bytes=0x10-"}, 200),
    ({"Range": "bytes=99999999999999999999999999-"}, 416),
    ({"Range": "bytes=0-99999999999999999999999999"}, 206),
    ({"If-Modified-Since": "yesterday"}, 200),
    ({"If-Unmodified-Since": "Mon, 31 Feb 2020 25:61:00 GMT"}, 200),
    ({"If-None-Match": "no-quotes"}, 200),
    ({"If-Match": '"unterminated'}, 200),
    ({"If-Range": "not a validator", "Range": "bytes=0-1"}, 200),
]


@pytest.mark.parametrize(("headers", "status"), MALFORMED, ids=[str(h) for h, _ in MALFORMED])
def test_malformed_range_and_conditional_headers_are_ignored_not_a_500(
    served: Served, headers: dict[str, str], status: int
) -> None:
    response = httpx.get(served.object_url(PHOTO), headers=headers)
    assert response.status_code == status
    if status == 200:
        assert response.content == served.objects[PHOTO].data


# --- Content-Disposition ---------------------------------------------------------------------


def test_non_ascii_filename_is_sent_as_rfc_6266_filename_star(served: Served) -> None:
    name = "監視カメラ 2026-11-21.jpg"
    response = httpx.get(served.object_url(PHOTO, filename=name, disposition="attachment"))
    value = response.headers["content-disposition"]
    assert value.startswith('attachment; filename="')
    encoded = re.search(r"filename\*=UTF-8''([^;\s]+)", value)
    assert encoded is not None
    assert unquote(encoded.group(1), encoding="utf-8") == name


def test_a_filename_cannot_inject_headers_or_parameters(served: Served) -> None:
    name = "a.jpg\"; filename*=UTF-8''evil.exe\r\nSet-Cookie: stolen=1"
    response = httpx.get(served.object_url(PHOTO, filename=name))
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    value = response.headers["content-disposition"]
    assert value.count("filename*=") == 1
    encoded = re.search(r"filename\*=UTF-8''([^;\s]+)$", value)
    assert encoded is not None
    assert unquote(encoded.group(1)) == name.replace("\r\n", "")


@pytest.mark.parametrize(
    ("disposition", "filename", "expected"),
    [
        ("inline", None, "inline"),
        ("attachment", "report.pdf", 'attachment; filename="report.pdf"'),
        (
            "inline",
            "Café.pdf",
            "inline; filename=\"Cafe.pdf\"; filename*=UTF-8''Caf%C3%A9.pdf",
        ),
        (
            "attachment",
            'say "hi".txt',
            "attachment; filename=\"say _hi_.txt\"; filename*=UTF-8''say%20%22hi%22.txt",
        ),
        ("attachment", "\r\n", "attachment"),
    ],
)
def test_content_disposition_follows_rfc_6266(
    disposition: str, filename: str | None, expected: str
) -> None:
    assert content_disposition(disposition, filename) == expected


def test_content_disposition_rejects_an_unknown_disposition() -> None:
    with pytest.raises(ValueError, match="disposition must be 'inline' or 'attachment'"):
        content_disposition("form-data", "x")


# --- the field parsers never raise -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-1023", [ByteRange(first=0, last=1023)]),
        ("BYTES=5-", [ByteRange(first=5)]),
        ("bytes=-100", [ByteRange(suffix=100)]),
        ("bytes=0-1, ,5-6", [ByteRange(first=0, last=1), ByteRange(first=5, last=6)]),
        ("bytes=5-2", None),
        ("bytes=٣-4", None),
        ("bytes=1_0-20", None),
        (None, None),
    ],
)
def test_range_parser_follows_rfc_9110_grammar(
    value: str | None, expected: list[ByteRange] | None
) -> None:
    assert parse_range(value) == expected


def test_byte_ranges_resolve_against_the_object_length() -> None:
    assert ByteRange(first=0, last=99).resolve(10) == (0, 9)
    assert ByteRange(suffix=100).resolve(10) == (0, 9)
    assert ByteRange(suffix=0).resolve(10) is None
    assert ByteRange(first=10).resolve(10) is None
    assert ByteRange(suffix=5).resolve(0) is None


def test_entity_tag_lists_parse_with_weak_tags_and_star() -> None:
    assert parse_entity_tags("*") == "*"
    assert parse_entity_tags('"a", W/"b",,') == [EntityTag('"a"'), EntityTag('"b"', weak=True)]
    assert parse_entity_tags('"a" junk') is None
    assert parse_entity_tags("") is None


@given(st.text(max_size=60))
def test_field_parsers_never_raise(value: str) -> None:
    parse_range(value)
    parse_range("bytes=" + value)
    parse_entity_tags(value)
    content_disposition("attachment", value)


# --- body lifetime ---------------------------------------------------------------------------


class BodySpy:
    """Wraps the real SDK body: records ``close()``, and can fail after some bytes."""

    def __init__(self, body: Any, fail_after_bytes: int | None) -> None:
        self.body = body
        self.fail_after_bytes = fail_after_bytes
        self.read_bytes = 0
        self.closed = threading.Event()

    def _check(self, chunk: bytes) -> bytes:
        self.read_bytes += len(chunk)
        if self.fail_after_bytes is not None and self.read_bytes > self.fail_after_bytes:
            raise ConnectionResetError("the S3 connection broke")
        return chunk

    def close(self) -> Any:
        self.closed.set()
        return self.body.close()


class AsyncBodySpy(BodySpy):
    async def read(self, amount: int) -> bytes:
        return self._check(await self.body.read(amount))


class SyncBodySpy(BodySpy):
    def read(self, amount: int) -> bytes:
        return self._check(self.body.read(amount))


class Spies:
    def __init__(self) -> None:
        self.bodies: list[BodySpy] = []
        self.fail_after_bytes: int | None = None

    def add(self, found: dict[str, Any], spy_class: type[BodySpy]) -> dict[str, Any]:
        spy = spy_class(found["Body"], self.fail_after_bytes)
        self.bodies.append(spy)
        return {**found, "Body": spy}

    def wrap(self, client: Any) -> Any:
        spies = self

        class AsyncClient:
            def __getattr__(self, name: str) -> Any:  # meta, generate_presigned_url
                return getattr(client, name)

            async def get_object(self, **params: Any) -> dict[str, Any]:
                return spies.add(await client.get_object(**params), AsyncBodySpy)

            async def head_object(self, **params: Any) -> dict[str, Any]:
                result: dict[str, Any] = await client.head_object(**params)
                return result

        class SyncClient:
            def __getattr__(self, name: str) -> Any:
                return getattr(client, name)

            def get_object(self, **params: Any) -> dict[str, Any]:
                return spies.add(client.get_object(**params), SyncBodySpy)

            def head_object(self, **params: Any) -> dict[str, Any]:
                result: dict[str, Any] = client.head_object(**params)
                return result

        is_async = hasattr(client, "__aenter__")
        return AsyncClient() if is_async else SyncClient()

    def wrap_http(self, http_client: Any) -> Any:
        """The fast path's pyreqwest client, each response body spied on like an SDK body:
        ``closed`` when the response is closed, reads counted and failing on demand."""
        spies = self

        class Reader:
            def __init__(self, reader: Any, spy: BodySpy) -> None:
                self.reader, self.spy = reader, spy

            async def read_chunk(self) -> Any:  # what _FastObjectBody reads the body with
                # pyreqwest's chunks are what hyper read (~400 KiB): the first one that starts
                # past fail_after_bytes fails, as the SDK bodies' 1 MiB reads do.
                spy = self.spy
                if spy.fail_after_bytes is not None and spy.read_bytes >= spy.fail_after_bytes:
                    raise ConnectionResetError("the S3 connection broke")
                chunk = await self.reader.read_chunk()
                if chunk is not None:
                    spy.read_bytes += len(chunk)
                return chunk

        class Response:
            def __init__(self, response: Any, spy: BodySpy) -> None:
                self.response, self.status = response, response.status
                self.get_header = response.get_header
                self.body_reader = Reader(response.body_reader, spy)

        class Request:
            def __init__(self, request: Any) -> None:
                self.request = request
                self.spy = BodySpy(None, spies.fail_after_bytes)
                spies.bodies.append(self.spy)

            async def __aenter__(self) -> Response:
                return Response(await self.request.__aenter__(), self.spy)

            async def __aexit__(self, *exc: Any) -> None:
                self.spy.closed.set()
                await self.request.__aexit__(*exc)

        class Builder:
            def __init__(self, builder: Any) -> None:
                self.builder = builder

            def headers(self, headers: Any) -> Builder:
                return Builder(self.builder.headers(headers))

            def streamed_read_buffer_limit(self, limit: int) -> Builder:
                return Builder(self.builder.streamed_read_buffer_limit(limit))

            def build_streamed(self) -> Request:
                return Request(self.builder.build_streamed())

        class Client:
            async def __aenter__(self) -> Client:
                return self

            def request(self, method: str, url: str) -> Builder:
                return Builder(http_client.request(method, url))

        return Client()


@pytest.fixture(scope="module", params=KINDS)
def spied(request: pytest.FixtureRequest, seaweedfs: S3Peer) -> Iterator[tuple[str, Spies]]:
    stored_objects(seaweedfs)
    spies = Spies()
    app = make_app(seaweedfs, request.param, wrap=spies.wrap, wrap_http=spies.wrap_http)
    with LiveServer(app) as server:
        yield server.url, spies
    spies.fail_after_bytes = None


# The object's stored CRC32 is wrong: moto keeps the checksum a client sends with a PUT, and a
# raw PUT has no SDK to compute the right one. The app's SDK (response checksum validation on,
# botocore's default) then finds the mismatch once it has read the whole body.
BAD_SUM = "bad-checksum.bin"  # 3 MiB: the last of three 1 MiB pieces must not go out
# 512 KiB: one 1 MiB piece, though more than one aiohttp read (which returns what arrived)
BAD_SUM_SMALL = "bad-checksum-small.bin"


def put_with_crc32(peer: S3Peer, key: str, data: bytes, crc32: int) -> None:
    stored_objects(peer)  # the bucket
    response = httpx.put(
        f"{peer.endpoint_url}/{BUCKET}/{key}",
        content=data,
        headers={
            "x-amz-checksum-crc32": base64.b64encode(crc32.to_bytes(4, "big")).decode(),
            "x-amz-sdk-checksum-algorithm": "CRC32",
        },
    )
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def wrong_checksums_stored(moto_s3: S3Peer) -> S3Peer:
    for key, size in ((BAD_SUM, 3 * MiB), (BAD_SUM_SMALL, 512 * 1024)):
        data = os.urandom(size)
        put_with_crc32(moto_s3, key, data, zlib.crc32(data) ^ 1)
        put_with_crc32(moto_s3, "good-" + key, data, zlib.crc32(data))
    return moto_s3


@pytest.fixture(scope="module", params=KINDS)
def wrong_checksums(
    request: pytest.FixtureRequest, wrong_checksums_stored: S3Peer
) -> Iterator[str]:
    with LiveServer(make_app(wrong_checksums_stored, request.param)) as server:
        yield server.url


def test_a_checksum_mismatch_stops_the_body_before_its_last_piece(wrong_checksums: str) -> None:
    # The same bytes under their right checksum arrive whole: the SDK does check it.
    good = httpx.get(f"{wrong_checksums}/objects/good-{BAD_SUM}")
    assert good.status_code == 200
    assert len(good.content) == 3 * MiB
    received = 0
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("GET", f"{wrong_checksums}/objects/{BAD_SUM}") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-length"] == str(3 * MiB)
        for chunk in response.iter_raw():
            received += len(chunk)
    # The last piece, after which the SDK found the mismatch, never went out: the body is
    # visibly short of its Content-Length, not complete-looking.
    assert received < 3 * MiB


def test_a_checksum_mismatch_before_the_first_piece_is_a_502(wrong_checksums: str) -> None:
    assert httpx.get(f"{wrong_checksums}/objects/good-{BAD_SUM_SMALL}").status_code == 200
    response = httpx.get(f"{wrong_checksums}/objects/{BAD_SUM_SMALL}")
    assert response.status_code == 502
    assert error_of(response) == {"type": "upstream_error", "message": "The object store failed."}


def test_body_is_closed_after_a_complete_download(spied: tuple[str, Spies]) -> None:
    url, spies = spied
    response = httpx.get(f"{url}/objects/{CLIP}")
    assert response.status_code == 200
    assert len(response.content) == 2 * MiB
    assert spies.bodies[-1].closed.wait(5)


def test_body_is_closed_when_the_client_disconnects(
    spied: tuple[str, Spies], huge_object: int
) -> None:
    url, spies = spied
    with httpx.stream("GET", f"{url}/objects/{HUGE}") as response:
        next(response.iter_raw(64 * 1024))
    spy = spies.bodies[-1]
    assert spy.closed.wait(5)
    # Socket buffers hold a few MiB at most: the rest of the 200 MiB was never read from S3.
    assert spy.read_bytes < huge_object // 2


def test_failure_mid_body_aborts_the_connection_and_closes_the_body(
    spied: tuple[str, Spies],
) -> None:
    url, spies = spied
    spies.fail_after_bytes = MiB
    try:
        received = 0
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream("GET", f"{url}/objects/{CLIP}") as response,
        ):
            assert response.status_code == 200
            for chunk in response.iter_raw():
                received += len(chunk)
    finally:
        spies.fail_after_bytes = None
    assert received < 2 * MiB  # visibly incomplete, never a short "complete" body
    assert spies.bodies[-1].closed.wait(5)


def test_head_on_a_route_without_request_closes_the_unread_body(spied: tuple[str, Spies]) -> None:
    # Without ``request`` s3_stream cannot tell a HEAD, so it opens the object; the core
    # answers HEAD without reading it, and the body must still be closed.
    url, spies = spied
    response = httpx.head(f"{url}/plain/{CLIP}")
    assert response.status_code == 200
    assert response.content == b""
    assert spies.bodies[-1].closed.wait(5)


# --- 4. no pool exhaustion -------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_aborted_downloads_do_not_exhaust_the_connection_pool(
    seaweedfs: S3Peer, kind: ClientKind
) -> None:
    objects = stored_objects(seaweedfs)
    with (
        run_app_process(seaweedfs, kind, max_pool_connections=10) as app,
        httpx.Client(timeout=10, limits=httpx.Limits(max_connections=20)) as http,
    ):

        def abort_after_first_64_kib(_: int) -> int:
            with http.stream("GET", f"{app.url}/objects/{BIG}") as response:
                next(response.iter_raw(64 * 1024))
                return response.status_code

        # 200 downloads, 10 at a time (as many as the pool has connections), each dropped
        # by the client after its first 64 KiB.
        with ThreadPoolExecutor(max_workers=10) as pool:
            statuses = list(pool.map(abort_after_first_64_kib, range(200)))
        assert statuses == [200] * 200
        started = time.monotonic()
        for _ in range(20):
            response = http.get(f"{app.url}/objects/{CLIP}")
            assert response.status_code == 200
            assert response.content == objects[CLIP].data
        assert time.monotonic() - started < 5


# --- 5. memory under a slow client -----------------------------------------------------------


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class _Pattern:
    """A file-like 200 MiB object made of one random MiB repeated (no 200 MiB in memory)."""

    def __init__(self, size: int) -> None:
        self.block = os.urandom(MiB)
        self.size = size
        self.position = 0

    def read(self, amount: int = -1) -> bytes:
        amount = self.size - self.position if amount < 0 else amount
        amount = min(amount, self.size - self.position)
        offset = self.position % MiB
        out = (self.block[offset:] + self.block * (amount // MiB + 1))[:amount]
        self.position += amount
        return out


@pytest.fixture(scope="module")
def huge_object(seaweedfs: S3Peer) -> int:
    client = seaweedfs.sync_client()
    stored_objects(seaweedfs)
    client.upload_fileobj(_Pattern(200 * MiB), BUCKET, HUGE)
    size: int = client.head_object(Bucket=BUCKET, Key=HUGE)["ContentLength"]
    client.close()
    return size


@pytest.mark.parametrize("kind", KINDS)
def test_slow_client_keeps_the_server_memory_flat(
    seaweedfs: S3Peer, huge_object: int, kind: ClientKind
) -> None:
    # The app runs in its own process so its RSS is its own; the client reads ~10 MiB/s,
    # 20 of the 200 MiB: the S3 side could deliver all of it in under a second, so any
    # buffering that is not bounded shows up as growth within the first two seconds.
    with run_app_process(seaweedfs, kind) as app, httpx.Client(timeout=30) as http:
        url = f"{app.url}/objects/"
        for _ in range(3):  # warm up imports, the S3 connection pool and the worker thread
            assert http.get(url + CLIP).status_code == 200
        baseline = peak = _rss_bytes(app.pid)
        rate = 10 * MiB
        received = 0
        started = time.monotonic()
        with http.stream("GET", url + HUGE) as response:
            assert response.headers["content-length"] == str(huge_object)
            for chunk in response.iter_raw(64 * 1024):
                received += len(chunk)
                ahead = received / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)  # pacing the reader, not waiting for an event
                peak = max(peak, _rss_bytes(app.pid))
                if received >= 20 * MiB:
                    break
    assert received >= 20 * MiB
    assert time.monotonic() - started > 1.6  # the client really was slow
    assert peak - baseline <= 32 * MiB, f"RSS grew by {(peak - baseline) / MiB:.1f} MiB"


# --- 6. a browser seeking --------------------------------------------------------------------

FETCH_RANGE = """
async ([url, range]) => {
    const response = await fetch(url, {headers: {Range: range}});
    const body = new Uint8Array(await response.arrayBuffer());
    return {
        status: response.status,
        contentRange: response.headers.get("content-range"),
        sha256: Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", body)))
            .map((b) => b.toString(16).padStart(2, "0")).join(""),
        length: body.length,
    };
}
"""


def test_chromium_fetch_with_a_range_header_gets_a_206(served: Served, browser: Browser) -> None:
    clip = served.objects[CLIP]
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(served.object_url(PHOTO))  # any page of the app's origin
        for range_header, start, end in [
            ("bytes=1048576-1049599", 1048576, 1049599),
            ("bytes=-4096", clip.size - 4096, clip.size - 1),
        ]:
            result = page.evaluate(FETCH_RANGE, [served.object_url(CLIP), range_header])
            assert result["status"] == 206, json.dumps(result)
            assert result["contentRange"] == f"bytes {start}-{end}/{clip.size}"
            assert result["length"] == end - start + 1
            assert result["sha256"] == hashlib.sha256(clip.data[start : end + 1]).hexdigest()
    finally:
        context.close()


# --- the fast path's argument ----------------------------------------------------------------


class _NeverTouched:
    """An S3 client stand-in that fails the test if s3_stream looks at it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"s3_stream touched the client ({name}) before checking http_client")


@pytest.mark.parametrize("http_client", ["http://s3", object(), 3])
def test_an_http_client_that_is_no_pyreqwest_client_is_a_type_error(http_client: Any) -> None:
    from faststream_kit import s3_stream

    with pytest.raises(TypeError, match=r"^http_client must be a pyreqwest\.client\.Client"):
        s3_stream(_NeverTouched(), "media", "a.mp4", http_client=http_client)
