"""Headless Chromium reads an ``sse``-format chat over ``fetch()``: the browser as the client.

``EventSource`` can only GET and cannot send headers, so a chat front end POSTs the prompt
with ``fetch()`` and an ``Authorization: Bearer`` header (credentials in headers, never in the
query string, where logs and proxies keep them) and reads ``response.body`` itself. The page
is served from the app's own origin; it appends each ``event: text`` token to the answer as it
arrives and records ``performance.now()`` for it. The model is the scripted OpenAI peer read
through ``AsyncOpenAI``, one token every 150 ms, so "progressively" is observable: the first
token is on the page while the peer has not sent the last one yet.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from openai import AsyncOpenAI
from starlette.responses import Response

from faststream_kit import llm_stream
from faststream_kit.testing import LiveServer

from .openai_peer import Script, ScriptedOpenAI

if TYPE_CHECKING:
    from playwright.sync_api import Browser

USER_TOKEN = "user-session-token-4f2a"  # what the browser sends; the app checks it
TOKENS = ["Streams", " reach", " the", " page", " token", " by", " token."]
TOKEN_SECONDS = 0.15
PROMPT = "Say it slowly"

# The answer's pixels in a screenshot: red-dominant (the text is rgb(200, 0, 0) on white; the
# test counts the anti-aliased edges too, so it does not depend on the font's rendering).
INK_PIXELS = """async (png) => {
  const bytes = Uint8Array.from(atob(png), c => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], {type: 'image/png'}));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext('2d');
  context.drawImage(bitmap, 0, 0);
  const {data} = context.getImageData(0, 0, bitmap.width, bitmap.height);
  let ink = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] > 120 && data[i] - data[i + 1] > 60 && data[i] - data[i + 2] > 60) ink++;
  }
  return ink;
}"""

# startChat() POSTs the prompt and reads the SSE body by hand: blocks end with a blank line,
# "event:" names the type, "data:" lines carry JSON (WHATWG HTML, "Server-sent events").
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>chat</title>
<style>
  body { background: #fff; margin: 0; }
  #answer { color: rgb(200, 0, 0); font: 32px monospace; margin: 8px; min-height: 40px; }
</style>
<p id="answer"></p>
<script>
window.tokenTimes = [];
window.events = [];
window.finished = null;

function handleBlock(block) {
  let type = 'message';
  const data = [];
  for (const line of block.split(/\\r\\n|\\r|\\n/)) {
    if (line.startsWith('event:')) type = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  if (!data.length) return;
  const payload = JSON.parse(data.join('\\n'));
  window.events.push(type);
  if (type === 'text') {
    document.getElementById('answer').textContent += payload.text;
    window.tokenTimes.push(performance.now());
  } else if (type === 'done' || type === 'error') {
    window.finished = {type, ...payload};
  }
}

window.startChat = async (token, prompt) => {
  const response = await fetch('/chat', {
    method: 'POST',
    headers: {'Content-Type': 'application/json', 'Authorization': 'Bearer ' + token},
    body: JSON.stringify({prompt}),
  });
  window.responseStatus = response.status;
  window.contentType = response.headers.get('content-type');
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += value;
    const blocks = buffer.split(/\\r\\n\\r\\n|\\n\\n|\\r\\r/);
    buffer = blocks.pop();
    blocks.forEach(handleBlock);
  }
};
</script>
"""


def make_app(peer: ScriptedOpenAI) -> FastAPI:
    app = FastAPI()
    client = AsyncOpenAI(base_url=peer.base_url, api_key="sk-server-side", max_retries=0)

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.post("/chat")
    async def chat(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {USER_TOKEN}":
            return JSONResponse(
                {"detail": "a Bearer token is required"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        prompt = (await request.json())["prompt"]
        return llm_stream(
            client.chat.completions.create(
                model="slow-chat",
                messages=[{"role": "user", "content": prompt}],
                stream=True,
            ),
            format="sse",
        )

    return app


@pytest.fixture
def peer() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as peer:
        peer.script("slow-chat", Script(tokens=TOKENS, delay_seconds=TOKEN_SECONDS))
        yield peer


@pytest.fixture
def app_server(peer: ScriptedOpenAI) -> Iterator[LiveServer]:
    with LiveServer(make_app(peer)) as server:
        yield server


def test_chat_without_a_bearer_token_is_401_and_never_reaches_the_model(
    browser: Browser, app_server: LiveServer, peer: ScriptedOpenAI
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(app_server.url + "/")
        status = page.evaluate(
            """async () => {
                const response = await fetch('/chat', {
                    method: 'POST',
                    headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({prompt: 'hi'}),
                });
                return response.status;
            }"""
        )
    finally:
        context.close()
    assert status == 401
    assert peer.requests == []


def test_chromium_fetch_shows_sse_chat_tokens_progressively(
    browser: Browser, app_server: LiveServer, peer: ScriptedOpenAI, tmp_path: Path
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(app_server.url + "/")
        # Not awaited: the test watches the page while the chat streams.
        page.evaluate(
            "([token, prompt]) => { window.startChat(token, prompt); }", [USER_TOKEN, PROMPT]
        )

        page.wait_for_function(
            "text => document.getElementById('answer').textContent.includes(text)",
            arg=TOKENS[0],
            timeout=10_000,
        )
        record = peer.wait_for_request(1)
        sent_when_shown = record.tokens_sent
        # What the user sees at that moment: the picture, and the text it shows.
        mid_stream = page.locator("#answer").screenshot(path=tmp_path / "mid-stream.png")
        shown_mid_stream = page.text_content("#answer") or ""

        page.wait_for_function("window.finished !== null", timeout=10_000)
        answer = page.text_content("#answer")
        finished = page.evaluate("window.finished")
        status, content_type = page.evaluate("[window.responseStatus, window.contentType]")
        token_times = page.evaluate("window.tokenTimes")
        at_end = page.locator("#answer").screenshot(path=tmp_path / "at-end.png")
        ink_mid_stream, ink_at_end = (
            page.evaluate(INK_PIXELS, base64.b64encode(png).decode())
            for png in (mid_stream, at_end)
        )
    finally:
        context.close()

    # The first tokens were painted, not only put in the DOM, while the model was still
    # generating; the rest of the answer was painted later.
    assert ink_mid_stream > 0, "the mid-stream screenshot shows no text"
    assert ink_mid_stream < ink_at_end, (
        f"the mid-stream screenshot already shows the whole answer ({ink_mid_stream} pixels)"
    )
    assert "".join(TOKENS).startswith(shown_mid_stream)
    assert 0 < len(shown_mid_stream) < len("".join(TOKENS)), shown_mid_stream
    assert sent_when_shown < len(TOKENS), f"peer had sent {sent_when_shown} tokens"

    assert (status, content_type.split(";")[0]) == (200, "text/event-stream")
    assert answer == "".join(TOKENS)
    assert finished == {"type": "done", "finish_reason": "stop", "usage": None}
    assert len(token_times) == len(TOKENS)
    assert token_times[-1] - token_times[0] >= 500, f"token times (ms): {token_times}"
    # The prompt travelled in the POST body, the user's token stayed with our app.
    assert record.body["messages"] == [{"role": "user", "content": PROMPT}]
    assert record.api_key == "sk-server-side"
    assert record.wait_finished(timeout=2)
    assert record.completed
