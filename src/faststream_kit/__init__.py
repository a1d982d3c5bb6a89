"""Streaming responses for FastAPI and Starlette that actually stream.

LLM tokens, S3 objects, another service's body and Server-Sent Events, each one line away,
each correct on the wire: no MIME sniffing, proxy buffering or gzip holding chunks back, no
blocked event loop, no upstream left running after the client leaves, no error disguised as
a successful ``200``.
"""

from ._errors import ERRORS, ErrorType, StreamError
from ._formats import ErrorFrame
from ._llm import Completion, LLMFormat, LLMSource, OnComplete, ToolCall, llm_stream
from ._openapi import document_streams
from ._response import StreamResponse, stream_response
from ._response_classes import EventSourceResponse, NDJSONResponse
from ._s3 import s3_stream
from ._sse import ServerSentEvent, sse_frame
from ._sse_response import sse_response
from ._table import TableFormat, table_stream
from ._threads import ThreadIterator, default_thread_limiter, iterate_in_thread
from ._upstream import HeaderFilter, upstream_stream
from ._zip import S3Object, ZipMember, zip_stream

__all__ = [
    "ERRORS",
    "Completion",
    "ErrorFrame",
    "ErrorType",
    "EventSourceResponse",
    "HeaderFilter",
    "LLMFormat",
    "LLMSource",
    "NDJSONResponse",
    "OnComplete",
    "S3Object",
    "ServerSentEvent",
    "StreamError",
    "StreamResponse",
    "TableFormat",
    "ThreadIterator",
    "ToolCall",
    "ZipMember",
    "default_thread_limiter",
    "document_streams",
    "iterate_in_thread",
    "llm_stream",
    "s3_stream",
    "sse_frame",
    "sse_response",
    "stream_response",
    "table_stream",
    "upstream_stream",
    "zip_stream",
]

__version__ = "0.1.0.dev0"
