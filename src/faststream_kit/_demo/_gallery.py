"""The S3 gallery: a sample image and video in a bucket, served by ``s3_stream``.

By default the bucket lives in moto's S3 server, started on a random port of 127.0.0.1 for the
demo's lifetime, so no account is needed. With ``FASTSTREAM_KIT_DEMO_BUCKET`` set it is a real
bucket, reached with boto3's default credential chain (and ``AWS_ENDPOINT_URL`` for an
S3-compatible store).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._errors import StreamError, error_response
from .._s3 import s3_stream
from ._samples import sample_png, sample_video
from ._settings import DemoSettings

logger = logging.getLogger("faststream_kit.demo")

EMBEDDED_BUCKET = "faststream-kit-demo"
IMAGE = "sample.png"
VIDEO = "sample.webm"
MEDIA_TYPES = {IMAGE: "image/png", VIDEO: "video/webm"}
PREPARE_WAIT_SECONDS = 60.0


@dataclass
class Store:
    """A boto3 S3 client and where the samples go; ``server`` is the embedded one, if any."""

    client: Any
    bucket: str
    prefix: str
    source: str  # said on the page: where the bytes come from
    server: Any = None

    def key(self, name: str) -> str:
        return self.prefix + name

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


def open_embedded_store() -> Store:
    """Start moto's S3 server on 127.0.0.1 (a free port) with one empty bucket."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3 = importlib.import_module("boto3")
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        # Never the user's own credentials: this server is ours and accepts any.
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
    )
    store = Store(client, EMBEDDED_BUCKET, "", f"embedded S3 (moto) at {endpoint}", server)
    try:
        client.create_bucket(Bucket=EMBEDDED_BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass  # moto keeps its buckets per process: a second demo app in it shares them
    except BaseException:
        store.close()
        raise
    return store


def open_bucket_store(bucket: str, prefix: str) -> Store:
    boto3 = importlib.import_module("boto3")
    return Store(boto3.client("s3"), bucket, prefix, f"s3://{bucket}/{prefix}")


@dataclass
class Gallery:
    """Prepares the bucket in the background; the routes wait until it is ready."""

    settings: DemoSettings
    store: Store | None = None
    sizes: dict[str, int] = field(default_factory=dict)  # name -> bytes, once uploaded
    problems: dict[str, str] = field(default_factory=dict)  # name (or "store") -> why not
    ready: anyio.Event = field(default_factory=anyio.Event)

    async def prepare(self) -> None:
        try:
            # The store is kept from inside the thread: if the app stops meanwhile, close()
            # still finds the server to stop.
            await anyio.to_thread.run_sync(self._open_store)
            await self._put(IMAGE, await anyio.to_thread.run_sync(sample_png))
            try:
                video = await sample_video(self.settings.cache_dir)
            except (OSError, RuntimeError) as exc:
                logger.warning("no sample video: %s", exc)
                self.problems[VIDEO] = str(exc)
            else:
                if video is None:
                    self.problems[VIDEO] = (
                        "no ffmpeg to make the sample video: pip install 'faststream-kit[demo]'"
                    )
                else:
                    await self._put(VIDEO, video)
        except Exception as exc:
            logger.exception("the S3 gallery could not be prepared")
            self.problems["store"] = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()

    def _open_store(self) -> None:
        if self.settings.bucket:
            self.store = open_bucket_store(self.settings.bucket, self.settings.prefix)
        else:
            self.store = open_embedded_store()

    async def _put(self, name: str, data: bytes) -> None:
        store = self.store
        assert store is not None
        if store.server is None:
            # A real bucket: upload only what is missing, and never overwrite.
            found = await anyio.to_thread.run_sync(self._size_of, store, name)
            if found is not None:
                self.sizes[name] = found
                return
        await anyio.to_thread.run_sync(
            lambda: store.client.put_object(
                Bucket=store.bucket, Key=store.key(name), Body=data, ContentType=MEDIA_TYPES[name]
            )
        )
        self.sizes[name] = len(data)

    @staticmethod
    def _size_of(store: Store, name: str) -> int | None:
        try:
            head = store.client.head_object(Bucket=store.bucket, Key=store.key(name))
        except store.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    async def close(self) -> None:
        if self.store is not None:
            await anyio.to_thread.run_sync(self.store.close)

    def describe(self) -> dict[str, Any]:
        return {
            "ready": self.ready.is_set(),
            "source": self.store.source if self.store else None,
            "items": [
                {"name": name, "url": f"/media/{name}", "type": MEDIA_TYPES[name], "bytes": size}
                for name, size in self.sizes.items()
            ],
            "problems": self.problems,
        }


@asynccontextmanager
async def running_gallery(settings: DemoSettings) -> AsyncIterator[Gallery]:
    """A gallery preparing itself in the background while the app serves."""
    gallery = Gallery(settings)
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(gallery.prepare)
            yield gallery
            tasks.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await gallery.close()


async def _ready_gallery(request: Request) -> Gallery:
    gallery: Gallery = request.app.state.gallery
    with anyio.move_on_after(PREPARE_WAIT_SECONDS):
        await gallery.ready.wait()
    return gallery


async def gallery_info(request: Request) -> Response:
    """What the gallery holds, once it is ready (the page asks this first)."""
    return JSONResponse((await _ready_gallery(request)).describe())


async def media(request: Request) -> Response:
    """GET/HEAD /media/{name}: the object, with Range, conditional GET and HEAD."""
    name = request.path_params["name"]
    if name not in MEDIA_TYPES:
        return error_response(StreamError("no such sample", status_code=404, type="not_found"))
    gallery = await _ready_gallery(request)
    if gallery.store is None or name not in gallery.sizes:
        why = gallery.problems.get(name) or gallery.problems.get("store") or "still preparing"
        return error_response(StreamError(why, status_code=503, type="unavailable"))
    store = gallery.store
    return s3_stream(store.client, store.bucket, store.key(name), request=request)
