"""LangChain chat models and LangGraph graphs.

``chat_model.astream(...)`` and ``.stream(...)`` yield ``AIMessageChunk``s. A compiled
LangGraph graph's ``astream(..., stream_mode="messages")`` yields ``(message, metadata)``
pairs: the chunks of every chat model a node runs, and the whole messages nodes return
without streaming them (tool results, a hard-coded answer). Both are recognised by their
first item's shape, so nothing here imports LangChain.

What a message carries, across providers:

- text: ``content`` as a ``str`` (OpenAI), or a list of content blocks (Anthropic, the
  Responses API, ``output_version="v1"``) whose ``text`` blocks are the answer;
- reasoning: ``thinking`` blocks (Anthropic, Gemini), ``reasoning`` blocks (the standard
  ``reasoning`` field, or the Responses API's ``summary`` parts), Bedrock's
  ``reasoning_content`` blocks, or ``additional_kwargs["reasoning_content"]`` (DeepSeek,
  vLLM);
- tool calls: ``tool_call_chunks`` (the content blocks that repeat them are skipped), or the
  finished ``tool_calls`` of a whole ``AIMessage``;
- usage: ``usage_metadata``, which LangChain adds up when it merges chunks (an integration may
  spread it over several: input tokens first, output tokens last), so it is added up here;
- finish reason: ``response_metadata["finish_reason"]`` (OpenAI, Gemini) or
  ``["stop_reason"]`` (Anthropic).

Closing needs nothing of its own here. A client that leaves while the SDK waits for the next
token cancels that read, and the HTTP client drops the connection. Between reads, ``aclose()``
unwinds ``BaseChatModel.astream``, which does not close the provider's ``_astream`` generator
it iterates (the one holding the SDK stream in ``async with``); the last reference to it goes,
and the event loop's async-generator finalizer closes it at once in a task of its own, without
the garbage collector (measured with ``tests/openai_peer.py``: ~2 ms after ``aclose()``). A
graph's ``astream`` cancels the node tasks it runs when it is closed. A chat model's sync
``stream()`` is read in a worker thread: the HTTP response its chain reads (an openai or
anthropic ``Stream``'s) is found after each chunk, and a client that leaves while that thread
waits for a token has its socket shut down from the event loop (``InterruptibleChain``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Iterable
from typing import Any

from .._events import Finish, LLMEvent, ReasoningDelta, TextDelta, ToolCallDelta
from ._base import InterruptibleChain, Reader
from .anthropic import STOP_REASONS
from .gemini import FINISH_REASONS

__all__ = ["ITEMS", "ChatModelReader", "GraphReader", "for_item", "for_stream"]

ITEMS = 'a LangChain AIMessageChunk or a LangGraph stream_mode="messages" item'

# Finish reasons as the providers name them in ``response_metadata``, in OpenAI's words: the
# provider modules' own tables (one place each), and OpenAI's deprecated function calling. Any
# other name is passed on as the provider gave it.
_FINISH_REASONS = {**STOP_REASONS, **FINISH_REASONS, "function_call": "tool_calls"}

_GRAPH_MODES = frozenset(
    ("values", "updates", "checkpoints", "tasks", "debug", "messages", "custom", "tools")
)
"""LangGraph's stream modes: with several (``stream_mode=["messages", "updates"]``) each item
says its mode, and only ``messages`` items are read."""


def for_stream(stream: Any) -> Reader | None:
    """A chat model's sync ``stream()`` generator, so that its HTTP read can be interrupted;
    ``astream()`` and graphs are recognised by their first item instead."""
    code = getattr(stream, "gi_code", None)
    frame = getattr(stream, "gi_frame", None)
    if (
        code is not None
        and frame is not None
        and code.co_qualname == _SYNC_STREAM
        and frame.f_globals.get("__name__") == _SYNC_STREAM_MODULE
    ):
        return ChatModelReader(sync=True)
    return None


_SYNC_STREAM = "BaseChatModel.stream"
_SYNC_STREAM_MODULE = "langchain_core.language_models.chat_models"


def for_item(item: Any) -> Reader | None:
    """A LangChain AI message (chat model stream) or a LangGraph stream item."""
    if _is_ai_message(item):
        return ChatModelReader()
    if _is_graph_item(item):
        return GraphReader()
    return None


def _is_message(value: Any) -> bool:
    # Every BaseMessage has these three; no other SDK's object has all of them.
    return (
        hasattr(value, "content")
        and hasattr(value, "additional_kwargs")
        and hasattr(value, "response_metadata")
    )


def _is_ai_message(value: Any) -> bool:
    return _is_message(value) and hasattr(value, "tool_calls")


def _is_graph_item(item: Any) -> bool:
    if type(item) is dict:  # version="v2"
        return item.get("type") in _GRAPH_MODES and "ns" in item and "data" in item
    if type(item) is tuple and 2 <= len(item) <= 3:
        if type(item[-2]) is str:  # (mode, payload) or (namespace, mode, payload)
            return item[-2] in _GRAPH_MODES
        pair = item[1] if type(item[0]) is tuple else item  # (namespace, pair): subgraphs
        return (
            type(pair) is tuple
            and len(pair) == 2
            and isinstance(pair[1], dict)
            and _is_message(pair[0])
        )
    return False


class ChatModelReader(Reader):
    """``AIMessageChunk``s of one chat model run (or the ``AIMessage`` of ``ainvoke``)."""

    __slots__ = (
        "_chain",
        "_finish_reason",
        "_last_tool",
        "_sync",
        "_tool_calls",
        "_tool_indexes",
        "_usage",
    )

    def __init__(self, *, sync: bool = False) -> None:
        self._sync = sync
        self._chain: InterruptibleChain | None = None
        self._finish_reason: str | None = None
        self._usage: dict[str, int] | None = None
        # (model call, the provider's index or call id) -> our dense tool call index: the
        # provider's index is a content block number (Anthropic: 1 after a text block), and
        # each model call of a graph starts again at 0.
        self._tool_indexes: dict[tuple[Any, Any], int] = {}
        self._tool_calls = 0
        self._last_tool = -1

    def items(self, stream: Any) -> Iterable[Any] | AsyncIterable[Any]:
        if self._sync:
            self._chain = InterruptibleChain(stream, _is_last_chunk)
            return self._chain
        return super().items(stream)

    def interrupt(self) -> None:
        if self._chain is not None:
            self._chain.interrupt()

    def events_for(self, item: Any) -> list[LLMEvent]:
        # Per token: a chunk of text alone (most of them) skips the general reading below.
        content = item.content
        if (
            type(content) is str
            and content
            and not item.additional_kwargs
            and not getattr(item, "tool_call_chunks", None)
            and item.usage_metadata is None
            and not _finishes(item.response_metadata)
        ):
            return [TextDelta(content)]
        return self.message_events(item, None)  # one model call

    def message_events(self, message: Any, call: object) -> list[LLMEvent]:
        """The events of one message of the model call ``call`` (for tool call numbering)."""
        events: list[LLMEvent] = []
        extra = message.additional_kwargs
        if extra:
            reasoning = extra.get("reasoning_content")
            if type(reasoning) is str and reasoning:
                events.append(ReasoningDelta(reasoning))
        content = message.content
        if type(content) is str:
            if content:
                events.append(TextDelta(content))
        elif content:
            events.extend(_block_events(content))
        chunks = getattr(message, "tool_call_chunks", None)
        if chunks:
            for chunk in chunks:
                events.append(self._tool_call_piece(call, chunk))
        elif chunks is None and message.tool_calls:  # a whole AIMessage
            for tool_call in message.tool_calls:
                events.append(self._whole_tool_call(call, tool_call))
        usage = message.usage_metadata
        if usage:
            self._add_usage(usage)
        metadata = message.response_metadata
        if _finishes(metadata):  # per chunk: {"model_provider": ...}; the last has the reason
            reason = metadata.get("finish_reason") or metadata.get("stop_reason")
            if reason or metadata.get("status") == "incomplete":
                self._read_finish(metadata, reason)
        return events

    def _tool_call_piece(self, call: object, chunk: Any) -> ToolCallDelta:
        index, call_id, name = chunk.get("index"), chunk.get("id"), chunk.get("name")
        key = (call, index if index is not None else call_id)
        position = self._tool_indexes.get(key)
        if position is None:
            if call_id is None and name is None and self._last_tool >= 0:
                # More arguments of the call being streamed, under a key not seen before (a
                # provider that numbers nothing, or a chunk whose message id differs).
                position = self._last_tool
            else:
                position = self._new_tool_call(key)
        self._last_tool = position
        return ToolCallDelta(position, call_id, name, chunk.get("args") or "")

    def _new_tool_call(self, key: tuple[Any, Any]) -> int:
        position = self._tool_indexes[key] = self._tool_calls
        self._tool_calls += 1
        return position

    def _whole_tool_call(self, call: object, tool_call: Any) -> ToolCallDelta:
        position = self._new_tool_call((call, tool_call.get("id") or self._tool_calls))
        self._last_tool = position
        arguments = json.dumps(tool_call.get("args") or {}, separators=(",", ":"))
        return ToolCallDelta(position, tool_call.get("id"), tool_call.get("name"), arguments)

    def _add_usage(self, usage: Any) -> None:
        prompt = int(usage.get("input_tokens") or 0)
        completion = int(usage.get("output_tokens") or 0)
        total = int(usage.get("total_tokens") or prompt + completion)
        if self._usage is None:
            self._usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        self._usage["prompt_tokens"] += prompt
        self._usage["completion_tokens"] += completion
        self._usage["total_tokens"] += total

    def _read_finish(self, metadata: Any, reason: object) -> None:
        if not reason:  # the Responses API: status "incomplete"
            details = metadata.get("incomplete_details") or {}
            reason = details.get("reason") if isinstance(details, dict) else None
            reason = "length" if reason == "max_output_tokens" else reason
        if isinstance(reason, str) and reason:
            self._finish_reason = _FINISH_REASONS.get(reason, reason)

    def finish(self) -> Finish:
        reason = self._finish_reason or ("tool_calls" if self._tool_calls else "stop")
        return Finish(reason, self._usage)


class GraphReader(ChatModelReader):
    """LangGraph ``stream_mode="messages"``: the AI messages of every node are the answer.

    Every chat model a node runs streams here, and so does an ``AIMessage`` a node returns
    whole; their tool calls are numbered one after the other. Tool results (``ToolMessage``),
    and any other message kind, are not part of the answer: the formats have no place for
    them, and the model's next message says what it made of them. Items of other stream
    modes (``stream_mode=["messages", "updates"]``) are skipped. To stream one node only,
    filter the pairs by ``metadata["langgraph_node"]`` before handing them over.
    """

    __slots__ = ()

    def events_for(self, item: Any) -> list[LLMEvent]:
        pair = _messages_pair(item)
        if pair is None:
            return []
        message = pair[0]
        if message.type not in ("AIMessageChunk", "ai"):
            return []
        # The chunks of one model call share its run's id (LangChain gives every chunk it).
        return self.message_events(message, message.id)


def _finishes(metadata: Any) -> bool:
    """Whether ``response_metadata`` may say why the model stopped (``in``: no method call
    for the ``{"model_provider": ...}`` of every other chunk)."""
    return bool(metadata) and (
        "finish_reason" in metadata or "stop_reason" in metadata or "status" in metadata
    )


def _is_last_chunk(message: Any) -> bool:
    """A chunk with the finish reason: only usage and the end of the body come after it
    (read to its end, the connection may go back to the pool, so it is left alone)."""
    metadata = getattr(message, "response_metadata", None)
    return bool(
        getattr(message, "chunk_position", None) == "last"
        or (metadata and (metadata.get("finish_reason") or metadata.get("stop_reason")))
    )


def _messages_pair(item: Any) -> Any:
    """The ``(message, metadata)`` pair of a messages-mode item, or None for another mode."""
    if type(item) is dict:  # version="v2": {"type": mode, "ns": namespace, "data": payload}
        return item["data"] if item.get("type") == "messages" else None
    if type(item) is not tuple:
        return None
    if len(item) == 3:  # subgraphs=True with several modes: (namespace, mode, payload)
        return item[2] if item[1] == "messages" else None
    first, second = item
    if type(first) is str:  # several modes: (mode, payload)
        return second if first == "messages" else None
    if type(first) is tuple:  # subgraphs=True: (namespace, (message, metadata))
        return second
    return item


def _block_events(blocks: Iterable[Any]) -> list[LLMEvent]:
    """Text and reasoning of a list of content blocks; tool blocks repeat tool_call_chunks."""
    events: list[LLMEvent] = []
    for block in blocks:
        if type(block) is str:
            if block:
                events.append(TextDelta(block))
            continue
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if isinstance(text, str) and text:
                events.append(TextDelta(text))
        elif kind in ("thinking", "reasoning", "reasoning_content"):
            reasoning = _reasoning_text(kind, block)
            if reasoning:
                events.append(ReasoningDelta(reasoning))
    return events


def _reasoning_text(kind: str, block: dict[str, Any]) -> str:
    value = block.get(kind)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # Bedrock: {"reasoning_content": {"text": ...}}
        text = value.get("text")
        return text if isinstance(text, str) else ""
    summary = block.get("summary")  # the Responses API: {"summary": [{"text": ...}]}
    if isinstance(summary, list):
        return "".join(
            part["text"]
            for part in summary
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""
