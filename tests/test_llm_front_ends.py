"""Headless Chromium runs the front ends' own client code against ``llm_stream``.

``format="ui"`` is read by the AI SDK's ``AbstractChat`` with its ``DefaultChatTransport`` (the
chat that ``useChat`` wraps; here with a tiny state that writes the answer into the page, as
React would), and ``format="ag-ui"`` by ``@ag-ui/client``'s ``HttpAgent`` (what CopilotKit
runs). Both come from ``tests/ui_schema/node_modules`` bundled by esbuild into one script the
app serves, so the page is same-origin. The model is the scripted OpenAI peer read through
``AsyncOpenAI``, one token every 150 ms: the first words are on the page while the peer has not
sent the last one yet.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from openai import AsyncOpenAI
from starlette.responses import Response

from faststream_kit import StreamResponse, llm_stream
from faststream_kit.testing import LiveServer

from .conftest import need_peer
from .front_end_scripts import UI_SCHEMA_DIR
from .openai_peer import Script, ScriptedOpenAI, Usage

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TOKENS = ["Streams", " reach", " the", " page", " token", " by", " token."]
TOKEN_SECONDS = 0.15
USAGE = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>front ends</title>
<p id="answer"></p>
<script type="module">
import { AbstractChat, DefaultChatTransport, HttpAgent } from "/front-ends.js";

const answer = document.getElementById("answer");
window.shown = [];  // [ms, text on the page]
function show(text) {
  if (text === answer.textContent) return;
  answer.textContent = text;
  window.shown.push([performance.now(), text]);
}

// What useChat's React state does: keep the messages, re-render on every change.
class PageState {
  constructor() { this.status = "ready"; this.error = undefined; this.messages = []; }
  render() {
    const last = this.messages[this.messages.length - 1];
    if (last?.role === "assistant") {
      show(last.parts.filter((p) => p.type === "text").map((p) => p.text).join(""));
    }
  }
  pushMessage(message) { this.messages = [...this.messages, message]; this.render(); }
  popMessage() { this.messages = this.messages.slice(0, -1); this.render(); }
  replaceMessage(index, message) {
    this.messages = this.messages.map((m, i) => (i === index ? message : m));
    this.render();
  }
  snapshot(thing) { return structuredClone(thing); }
}

class Chat extends AbstractChat {
  constructor(options) { super({ ...options, state: new PageState() }); }
}

window.chatWithUi = async (script) => {
  let finished = null;
  const chat = new Chat({
    transport: new DefaultChatTransport({ api: "/api/chat/" + script }),
    onFinish: ({ message, isAbort, isError, finishReason }) => {
      finished = { message, isAbort, isError, finishReason };
    },
  });
  await chat.sendMessage({ text: "Say it slowly" });
  return { finished, status: chat.status, error: chat.error?.message ?? null };
};

// The user presses "stop" as soon as the first words are on the page.
window.stopUiAfterFirstWords = async (script) => {
  let finished = null;
  const chat = new Chat({
    transport: new DefaultChatTransport({ api: "/api/chat/" + script }),
    onFinish: ({ isAbort }) => { finished = { isAbort }; },
  });
  const sent = chat.sendMessage({ text: "Say it slowly" });
  while (!answer.textContent) await new Promise((resolve) => setTimeout(resolve, 5));
  await chat.stop();
  await sent;
  return { finished, status: chat.status };
};

window.stopAgUiAfterFirstWords = async (script) => {
  const agent = new HttpAgent({ url: "/agent/" + script, threadId: "thread-b" });
  const run = agent.runAgent({ runId: "run-b" }, {
    onTextMessageContentEvent: ({ textMessageBuffer, event }) =>
      show(textMessageBuffer + event.delta),
  });
  while (!answer.textContent) await new Promise((resolve) => setTimeout(resolve, 5));
  agent.abortRun();
  await run.catch(() => {});
  return { text: answer.textContent };
};

window.runAgUi = async (script) => {
  const agent = new HttpAgent({ url: "/agent/" + script, threadId: "thread-b" });
  let runError = null;
  let finished = null;
  await agent.runAgent({ runId: "run-b" }, {
    onTextMessageContentEvent: ({ textMessageBuffer, event }) =>
      show(textMessageBuffer + event.delta),
    onRunErrorEvent: ({ event }) => { runError = event; },
    onRunFinishedEvent: ({ event }) => { finished = event; },
  });
  return { messages: agent.messages, runError, finished };
};
window.ready = true;
</script>
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """``tests/ui_schema/browser_entry.mjs`` and what it imports, as one browser script."""
    node = shutil.which("node")
    esbuild = UI_SCHEMA_DIR / "node_modules" / ".bin" / "esbuild"
    need_peer(node is not None, "node is not installed (apt-get install nodejs)")
    need_peer(esbuild.exists(), "esbuild is not installed (npm ci --prefix tests/ui_schema)")
    output = tmp_path_factory.mktemp("bundle") / "front-ends.js"
    subprocess.run(
        [
            str(esbuild),
            str(UI_SCHEMA_DIR / "browser_entry.mjs"),
            "--bundle",
            "--format=esm",
            "--platform=browser",
            "--log-level=error",
            f"--outfile={output}",
        ],
        check=True,
        timeout=120,
    )
    return output.read_bytes()


@pytest.fixture(scope="module")
def peer() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as scripted:
        scripted.script(
            "slow",
            Script(
                tokens=TOKENS,
                delay_seconds=TOKEN_SECONDS,
                usage=Usage(prompt_tokens=12, completion_tokens=7),
            ),
        )
        scripted.script(
            "fails",
            Script(tokens=["one", " two", " three"], fail_after_tokens=2, error_code="boom"),
        )
        scripted.script("between-tokens", Script(tokens=["first", " second"], delay_seconds=5))
        yield scripted


@pytest.fixture(scope="module")
def app_server(peer: ScriptedOpenAI, bundle: bytes) -> Iterator[LiveServer]:
    app = FastAPI()
    client = AsyncOpenAI(base_url=peer.base_url, api_key="sk-server-side", max_retries=0)

    def answer(script: str) -> Any:
        return client.chat.completions.create(
            model=script,
            messages=[{"role": "user", "content": "Say it slowly"}],
            stream=True,
            stream_options={"include_usage": True},
        )

    @app.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/front-ends.js")
    async def script() -> Response:
        return Response(bundle, media_type="text/javascript")

    @app.post("/api/chat/{script}")
    async def chat(script: str, body: dict[str, Any]) -> StreamResponse:
        assert body["messages"][-1]["parts"] == [{"type": "text", "text": "Say it slowly"}]
        return llm_stream(answer(script), format="ui")

    @app.post("/agent/{script}")
    async def agent(script: str, run: dict[str, Any]) -> StreamResponse:
        return llm_stream(
            answer(script), format="ag-ui", thread_id=run["threadId"], run_id=run["runId"]
        )

    with LiveServer(app) as server:
        yield server


def open_page(browser: Browser, server: LiveServer) -> Page:
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_function("window.ready === true", timeout=10_000)
    return page


def assert_shown_progressively(shown: list[list[Any]]) -> None:
    """The page showed the answer growing, over most of the time the model took to send it."""
    texts = [text for _, text in shown]
    assert texts[-1] == "".join(TOKENS)
    assert len(texts) >= len(TOKENS) - 1, texts  # a render may catch two tokens at once
    assert all(later.startswith(earlier) for earlier, later in pairwise(texts))
    times = [at for at, _ in shown]
    expected = TOKEN_SECONDS * 1000 * (len(TOKENS) - 1)
    assert times[-1] - times[0] >= expected * 0.6, f"shown at (ms): {times}"


def test_ai_sdk_chat_in_chromium_shows_the_answer_progressively(
    browser: Browser, app_server: LiveServer
) -> None:
    page = open_page(browser, app_server)
    try:
        result = page.evaluate("window.chatWithUi('slow')")
        shown = page.evaluate("window.shown")
    finally:
        page.close()

    assert (result["status"], result["error"]) == ("ready", None)
    finished = result["finished"]
    assert (finished["isAbort"], finished["isError"]) == (False, False)
    assert finished["finishReason"] == "stop"
    assert finished["message"]["metadata"] == {"finishReason": "stop", "usage": USAGE}
    assert_shown_progressively(shown)


def test_ai_sdk_chat_in_chromium_reports_a_mid_stream_error(
    browser: Browser, app_server: LiveServer
) -> None:
    page = open_page(browser, app_server)
    try:
        result = page.evaluate("window.chatWithUi('fails')")
        shown = page.evaluate("window.shown")
    finally:
        page.close()

    assert result["status"] == "error"
    assert result["error"]  # the provider's message, as useChat's `error` shows it
    assert result["finished"]["isError"] is True
    assert shown[-1][1] == "one two"


def test_ag_ui_agent_in_chromium_shows_the_answer_progressively(
    browser: Browser, app_server: LiveServer
) -> None:
    page = open_page(browser, app_server)
    try:
        result = page.evaluate("window.runAgUi('slow')")
        shown = page.evaluate("window.shown")
    finally:
        page.close()

    assert result["runError"] is None
    assert (result["finished"]["threadId"], result["finished"]["runId"]) == ("thread-b", "run-b")
    assert result["finished"]["usage"] == [
        {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19}
    ]
    [message] = result["messages"]
    assert (message["role"], message["content"]) == ("assistant", "".join(TOKENS))
    assert_shown_progressively(shown)


def test_ag_ui_agent_in_chromium_gets_run_error_mid_stream(
    browser: Browser, app_server: LiveServer
) -> None:
    page = open_page(browser, app_server)
    try:
        result = page.evaluate("window.runAgUi('fails')")
    finally:
        page.close()

    assert result["runError"]["code"] == "upstream_error"
    assert result["finished"] is None
    assert result["messages"][0]["content"] == "one two"


@pytest.mark.parametrize("front_end", ["Ui", "AgUi"])
def test_stop_in_chromium_closes_the_model_stream_between_tokens(
    browser: Browser, app_server: LiveServer, peer: ScriptedOpenAI, front_end: str
) -> None:
    # "The client ended it": useChat's stop() and HttpAgent's abortRun() abort the fetch, so
    # nothing more can reach them; the model's stream is closed at once, not 5 s later when
    # the model would send its next token.
    before = len(peer.requests)
    page = open_page(browser, app_server)
    try:
        result = page.evaluate(f"window.stop{front_end}AfterFirstWords('between-tokens')")
    finally:
        page.close()

    record = peer.wait_for_request(before + 1)
    assert record.wait_disconnected(2)
    assert record.disconnected_at is not None
    assert record.disconnected_at - record.token_sent_at[0] < 1.0
    assert record.tokens_sent == 1
    if front_end == "Ui":
        assert result == {"finished": {"isAbort": True}, "status": "ready"}
    else:
        assert result == {"text": "first"}
