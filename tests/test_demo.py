"""The demo page in headless Chromium, and ``faststream-kit demo`` on the command line.

The demo app runs in uvicorn on loopback with its embedded S3 server (moto) and a sample video
made by ffmpeg; the browser watches each panel while it streams.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from faststream_kit._demo import DemoSettings, create_app
from faststream_kit._demo._chat import DEFAULT_PROMPT, scripted_tokens
from faststream_kit._demo._samples import find_ffmpeg
from faststream_kit._demo._ticker import TICKS
from faststream_kit.testing import LiveServer

from .conftest import free_port, need_peer, stop_process, wait_for_port
from .s3_peers import run_moto

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Response

SCRIPTED_ANSWER = "".join(scripted_tokens(DEFAULT_PROMPT))
VIDEO = "/media/sample.webm"
OTHER_FORMATS = ["text", "ndjson", "openai", "ui"]  # sse is the default


@pytest.fixture(scope="module")
def demo() -> Iterator[LiveServer]:
    """The demo as on a fresh clone, whatever the environment: scripted model, embedded S3."""
    need_peer(find_ffmpeg() is not None, "no ffmpeg for the demo video: pip install imageio-ffmpeg")
    with LiveServer(create_app(DemoSettings())) as server:
        yield server


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # A context per test: its own connection pool (6 per host) and its own media cache.
    context = browser.new_context()
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def answer_text(page: Page) -> str:
    return str(page.eval_on_selector("#answer", "element => element.textContent"))


def test_chat_tokens_appear_while_the_answer_streams(demo: LiveServer, page: Page) -> None:
    page.goto(demo.url)
    page.wait_for_function("document.querySelector('#answer').textContent.length > 0")
    mid_stream = answer_text(page)
    assert 0 < len(mid_stream) < len(SCRIPTED_ANSWER)
    assert SCRIPTED_ANSWER.startswith(mid_stream)

    page.wait_for_selector("#answer[data-state=done]")
    assert answer_text(page) == SCRIPTED_ANSWER
    assert "(done)" in page.inner_text("#chat-meta")


def test_chat_answers_the_same_in_every_format(demo: LiveServer, browser: Browser) -> None:
    # One browser context per format, all asking at once (a context shares 6 connections
    # to a host among its pages): the page reads each wire format into the same answer.
    contexts = [browser.new_context() for _ in OTHER_FORMATS]
    try:
        check_every_format(demo, [context.new_page() for context in contexts])
    finally:
        for context in contexts:
            context.close()


def check_every_format(demo: LiveServer, pages: list[Page]) -> None:
    for page, answer_format in zip(pages, OTHER_FORMATS, strict=True):
        page.goto(f"{demo.url}/?format={answer_format}", wait_until="commit")
    for page, answer_format in zip(pages, OTHER_FORMATS, strict=True):
        page.wait_for_function(
            "document.querySelector('#chat-meta').textContent.startsWith("
            f"'{answer_format}:') && document.querySelector('#answer').dataset.state == 'done'",
            timeout=20_000,
        )
        assert answer_text(page) == SCRIPTED_ANSWER, answer_format


def test_video_is_served_with_ranges_and_seeks(demo: LiveServer, page: Page) -> None:
    def player_range(response: Response) -> bool:
        return response.url.endswith(VIDEO) and response.request.resource_type == "media"

    with page.expect_response(player_range) as first_player_response:
        page.goto(demo.url)
    # Chromium's player always asks with a Range header; an answer of 206 makes it seekable.
    assert first_player_response.value.status == 206
    page.wait_for_selector("#seek:not([disabled])")
    duration = page.eval_on_selector("#video", "video => video.duration")
    assert duration == pytest.approx(8, abs=0.2)
    assert page.eval_on_selector("#video", "video => video.seekable.end(0)") == duration

    def page_range(response: Response) -> bool:
        return response.url.endswith(VIDEO) and response.request.resource_type == "fetch"

    with page.expect_response(page_range) as seek_response:
        page.click("#seek")
    assert seek_response.value.status == 206
    asked = seek_response.value.request.headers["range"]  # bytes=first-last
    assert seek_response.value.headers["content-range"].startswith(asked.replace("=", " "))
    page.wait_for_function(
        "(() => { const v = document.querySelector('#video');"
        " return !v.seeking && v.readyState >= 2 && v.currentTime == v.duration / 2; })()"
    )
    page.wait_for_function("document.querySelector('#seek-meta').textContent.includes('206')")


def test_image_arrives_with_bytes_counted(demo: LiveServer, page: Page) -> None:
    page.goto(demo.url)
    page.wait_for_function("document.querySelector('#image').naturalWidth > 0")
    assert page.eval_on_selector("#image", "image => image.naturalWidth") == 640
    progress = page.eval_on_selector("#image-progress", "bar => [bar.value, bar.max]")
    assert progress[0] == progress[1] > 10_000
    assert "image/png" in page.inner_text("#image-meta")


def test_trap_shows_our_lines_while_the_plain_response_shows_nothing(
    demo: LiveServer, page: Page
) -> None:
    page.goto(demo.url)
    plain = page.locator("#trap-plain").element_handle().content_frame()
    ours = page.locator("#trap-ours").element_handle().content_frame()
    assert plain is not None
    assert ours is not None
    body_text = "document.body ? document.body.innerText : ''"

    ours.wait_for_function("document.body && document.body.innerText.includes('line 2 of 10')")
    assert "line 10 of 10" not in ours.evaluate(body_text)  # the stream is still going...
    assert plain.evaluate(body_text) == ""  # ...and the sniffing browser shows none of it

    # Once the stream ends the plain side shows everything at once: the same lines.
    plain.wait_for_function("document.body && document.body.innerText.includes('line 10 of 10')")
    ours.wait_for_function("document.body && document.body.innerText.includes('line 10 of 10')")
    assert plain.evaluate(body_text) == ours.evaluate(body_text)


def test_upstream_panel_shows_ticks_as_they_arrive(demo: LiveServer, page: Page) -> None:
    page.goto(demo.url)
    page.wait_for_function("document.querySelector('#ticks').textContent.includes('tick 2/')")
    shown = page.inner_text("#ticks")
    assert f"tick {TICKS}/{TICKS}" not in shown  # proxied while the upstream still sends
    page.wait_for_selector("#ticks[data-state=done]")
    assert (page.text_content("#ticks") or "").count(" tick ") == TICKS
    meta = page.inner_text("#ticker-meta")
    assert meta.startswith("200 application/x-ndjson, X-Upstream: ticker")


def test_gallery_uses_the_given_bucket_and_never_overwrites(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    need_peer(find_ffmpeg() is not None, "no ffmpeg for the demo video: pip install imageio-ffmpeg")
    with run_moto() as peer:
        # The standard variables boto3's default chain reads.
        monkeypatch.setenv("AWS_ENDPOINT_URL", peer.endpoint_url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("FASTSTREAM_KIT_DEMO_BUCKET", "my-media")
        monkeypatch.setenv("FASTSTREAM_KIT_DEMO_PREFIX", "demo/")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="my-media")
        s3.put_object(Bucket="my-media", Key="demo/sample.png", Body=b"their own image")

        with LiveServer(create_app()) as server:
            info = httpx.get(server.url + "/gallery", timeout=60).json()
            image = httpx.get(server.url + "/media/sample.png")
            video_head = httpx.head(server.url + VIDEO)

    assert info["source"] == "s3://my-media/demo/"
    assert info["problems"] == {}
    assert image.content == b"their own image"
    assert video_head.status_code == 200
    assert video_head.headers["content-type"] == "video/webm"


def test_console_script_serves_the_demo_page() -> None:
    script = shutil.which("faststream-kit")
    command = [script] if script else [sys.executable, "-m", "faststream_kit"]
    port = free_port()
    environment = {**os.environ, "OPENAI_API_KEY": "", "FASTSTREAM_KIT_DEMO_BUCKET": ""}
    process = subprocess.Popen(
        [*command, "demo", "--port", str(port)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, timeout=30)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        image = httpx.get(f"http://127.0.0.1:{port}/media/sample.png", timeout=60)
    finally:
        stop_process(process)
        out, err = process.communicate()

    assert page.status_code == 200
    assert "S3 gallery" in page.text
    assert "Upstream proxy" in page.text
    assert image.status_code == 200
    assert image.content.startswith(b"\x89PNG")
    assert f"http://127.0.0.1:{port}" in out.decode()
    assert "scripted model" in out.decode()
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
    assert process.returncode in (0, -signal.SIGTERM), err.decode()
    assert "Traceback" not in err.decode()
