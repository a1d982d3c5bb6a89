"""Peers for the documentation's executed examples (README.md and docs/, pytest-markdown-docs).

An example that needs a program besides Python names a fixture in its fence's info string,
``python fixture:needs_redis_server``; pytest-markdown-docs requests that fixture before the
example runs. Like the tests' peers (``tests/conftest.py``), a missing program skips the example
with what to install, and fails it under ``CI=true``. ``mkdocs_hooks.py`` drops the fixture
names from the rendered page.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from tests.anthropic_peer import Script, ScriptedAnthropic
from tests.conftest import need_peer
from tests.openai_peer import Script as OpenAIScript
from tests.openai_peer import ScriptedOpenAI
from tests.openai_peer import Usage as OpenAIUsage


@pytest.fixture
def needs_redis_server() -> str:
    """The ``redis-server`` on ``PATH``, which is where the example looks for it."""
    path = shutil.which("redis-server")
    need_peer(path is not None, "redis-server not found: apt-get install redis-server")
    assert path is not None
    return path


@pytest.fixture
def openai_peer_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedOpenAI]:
    """The scripted OpenAI-compatible server (``tests/openai_peer.py``), with ``OPENAI_BASE_URL``
    and ``OPENAI_API_KEY`` pointing at it, for examples that build a client from the environment
    as they would in production. Every model answers ``Hello, world!`` (usage 9 + 4).

    A ``continuation`` fence runs the fences before it again, so each fence of an example names
    this fixture and gets a server of its own."""
    script = OpenAIScript(usage=OpenAIUsage(prompt_tokens=9, completion_tokens=4))
    with ScriptedOpenAI(script) as peer:
        monkeypatch.setenv("OPENAI_BASE_URL", peer.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-docs-example")
        yield peer


@pytest.fixture
def anthropic_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedAnthropic]:
    """The scripted Anthropic Messages API (``tests/anthropic_peer.py``) on loopback, where an
    ``anthropic`` client made without arguments finds it: ``ANTHROPIC_BASE_URL`` and
    ``ANTHROPIC_API_KEY`` are set for the example, as they are in production."""
    script = Script(
        thinking=["The user", " says hello."],
        tokens=["Hello", "!", " How", " can", " I", " help", "?"],
        delay_seconds=0.02,
    )
    with ScriptedAnthropic(script) as peer:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", peer.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-docs-example")
        yield peer


@pytest.fixture
def scripted_gemini(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The scripted Gemini API (``tests/gemini_peer.py``) as the SDK's default endpoint:
    ``genai.Client()`` reads ``GEMINI_API_KEY`` and ``GOOGLE_GEMINI_BASE_URL``."""
    from tests.gemini_peer import Script, ScriptedGemini, Usage

    script = Script(
        thoughts=["Rayleigh", " scattering"],
        tokens=["Short", " wavelengths", " scatter", " more."],
        usage=Usage(prompt_tokens=6, candidates_tokens=4, thoughts_tokens=2),
        delay_seconds=0.02,
    )
    with ScriptedGemini(script) as server:
        monkeypatch.setenv("GEMINI_API_KEY", "docs-example-key")
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        yield server
