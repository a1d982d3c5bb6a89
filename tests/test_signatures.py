"""One name and one default per idea, in every public signature.

The table :data:`IDEAS` is the decision (``docs/design.md``, "One name per idea"): for each
idea the one parameter name, its type and its default, and which callables must have it.
The tests walk every public callable, found through the ``__all__`` of ``faststream_kit`` and
of each of its public modules (so a new helper is checked the day it is exported): their
constructors and their public methods. A parameter that looks like one of the ideas under
another name (``ping``, ``keepalive_seconds``, ``limiter``, a bare ``timeout``), a canonical
name with another default or type, a helper without one of the ideas, a ``**kwargs`` that
is not a documented old name, or one name with two defaults across the API, fails.

Old names reach a helper only through its ``**deprecated`` keywords, typed by a
``TypedDict`` of the old names; :data:`OLD_NAMES` lists them and the tests call each one and
watch it warn. The table in ``docs/design.md`` is rendered from these tables, which the code
is checked against, and must match.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.requests import Request
from starlette.responses import Response

import faststream_kit
from faststream_kit import iterate_in_thread, llm_stream, sse_response, stream_response
from faststream_kit.resume import ResumableStreams
from faststream_kit.testing import LiveServer

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "faststream_kit"
DESIGN = ROOT / "docs" / "design.md"
NONE = type(None)

# --- the public surface, from __all__ --------------------------------------------------------


@dataclass(frozen=True)
class Public:
    """One public callable: a function, a class's constructor or a class's public method."""

    name: str  # as a user reaches it: "faststream_kit.resume.ResumableStreams.sse_response"
    function: Callable[..., Any]  # whose annotations describe the parameters
    parameters: tuple[inspect.Parameter, ...]  # without self/cls
    helper: bool  # returns a response: every helper idea applies

    @property
    def short(self) -> str:
        return self.name.removeprefix("faststream_kit.")

    def hints(self) -> dict[str, Any]:
        return typing.get_type_hints(self.function, include_extras=True)


def public_modules() -> list[types.ModuleType]:
    """``faststream_kit`` and each of its modules whose name has no leading underscore."""
    names = sorted(
        f"faststream_kit.{module.name}"
        for module in pkgutil.iter_modules(faststream_kit.__path__)
        if not module.name.startswith("_")
    )
    return [faststream_kit, *map(importlib.import_module, names)]


def _returns_response(function: Callable[..., Any]) -> bool:
    returned = typing.get_type_hints(function).get("return")
    return inspect.isclass(returned) and issubclass(returned, Response)


def _own_methods(cls: type) -> Iterator[tuple[str, Callable[..., Any]]]:
    """The public methods a class of ours defines (not those it inherits from Starlette)."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("faststream_kit"):
            continue
        for name, raw in vars(klass).items():
            function = raw.__func__ if isinstance(raw, classmethod | staticmethod) else raw
            if name.startswith("_") or name in seen or not inspect.isfunction(function):
                continue
            seen.add(name)
            yield name, function


def _parameters(function: Callable[..., Any], *, bound: bool) -> tuple[inspect.Parameter, ...]:
    parameters = tuple(inspect.signature(function).parameters.values())
    return parameters[1:] if bound else parameters


def public_callables() -> list[Public]:
    found: list[Public] = []
    seen: set[int] = set()
    for module in public_modules():
        for export in module.__all__:
            obj = getattr(module, export)
            if id(obj) in seen or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # a constant or a type alias: nothing to call
            seen.add(id(obj))
            name = f"{module.__name__}.{export}"
            if inspect.isfunction(obj):
                found.append(
                    Public(name, obj, _parameters(obj, bound=False), _returns_response(obj))
                )
                continue
            if obj.__init__ is not object.__init__:
                parameters = tuple(inspect.signature(obj).parameters.values())
                found.append(Public(name, obj.__init__, parameters, issubclass(obj, Response)))
            for method, function in _own_methods(obj):
                static = isinstance(inspect.getattr_static(obj, method), staticmethod)
                parameters = _parameters(function, bound=not static)
                found.append(
                    Public(f"{name}.{method}", function, parameters, _returns_response(function))
                )
    return found


PUBLIC = public_callables()


def by_name(name: str) -> Public:
    return next(public for public in PUBLIC if public.short == name)


# --- the decision ----------------------------------------------------------------------------


def every_helper(public: Public) -> bool:
    return public.helper


def helper_with_frames(public: Public) -> bool:
    # s3_stream, upstream_stream and zip_stream send bytes whose every byte counts: no
    # keepalive byte is possible.
    return public.helper and public.short not in {"s3_stream", "upstream_stream", "zip_stream"}


def helper_running_sync_code(public: Public) -> bool:
    # upstream_stream's clients are async only: it never runs code in a thread.
    return public.helper and public.short != "upstream_stream"


def nowhere(public: Public) -> bool:
    return False


@dataclass(frozen=True)
class Idea:
    idea: str
    name: str
    types: tuple[Any, ...]  # the members of the annotation's union
    default: Any
    where: str  # for the docs: who takes it
    required: Callable[[Public], bool]
    looks_like: str  # a regex: another name with a word (between "_") matching it
    exceptions: Mapping[str, tuple[Any, str]] = field(default_factory=dict)  # short -> why
    exact: bool = True  # False: the annotation may accept more than ``types``

    @property
    def shown_type(self) -> str:
        names = {
            NONE: "None",
            Mapping[str, str]: "Mapping[str, str]",
            anyio.CapacityLimiter: "anyio.CapacityLimiter",
        }
        return " | ".join(names.get(t, getattr(t, "__qualname__", str(t))) for t in self.types)


IDEAS = [
    Idea(
        "keepalive interval (idle seconds)",
        "keepalive",
        (float, NONE),
        15.0,
        "every helper but `s3_stream`, `upstream_stream` and `zip_stream` (bytes); sent only "
        "where the "
        "format has keepalive bytes (an SSE comment, an empty NDJSON line)",
        helper_with_frames,
        r"keep|keepalive|alive|ping|pings|heartbeat",
    ),
    Idea(
        "send timeout (client not reading)",
        "send_timeout",
        (float, NONE),
        30.0,
        "every helper",
        every_helper,
        r"send|write|timeout|deadline",
    ),
    Idea(
        "idle timeout (source silent)",
        "idle_timeout",
        (float, NONE),
        None,
        "every helper",
        every_helper,
        r"idle|silent|silence|timeout",
        exceptions={
            "llm_stream": (60.0, "a model that stops sending has failed"),
            "resume.ResumableStreams.llm_response": (60.0, "the same answer, resumable"),
        },
    ),
    Idea(
        "thread limiter",
        "thread_limiter",
        (anyio.CapacityLimiter, NONE),
        None,
        "every helper but `upstream_stream` (its clients are async only), "
        "`iterate_in_thread`; `None`: faststream-kit's own limiter",
        helper_running_sync_code,
        r"limiter|thread|threads|capacity|tokens",
    ),
    Idea(
        "extra headers",
        "headers",
        (Mapping[str, str], NONE),
        None,
        "every helper",
        every_helper,
        r"header|headers",
        exact=False,  # upstream_stream also takes (name, value) pairs
    ),
    Idea(
        "the request being answered",
        "request",
        (Request, NONE),
        None,
        "every helper; used for all it gives: the body while streaming, `Last-Event-ID`, "
        "`Range` and conditionals, forwarding",
        every_helper,
        r"request|req",
    ),
    Idea(
        "grace period at shutdown",
        "shutdown_grace_seconds",
        (float,),
        30.0,
        "`ResumableStreams`, `testing.LiveServer`",
        nowhere,
        r"grace|graceful",
        exceptions={
            "testing.LiveServer": (2.0, "a test run must not wait on a stream a test left open")
        },
    ),
]

IDEA_BY_NAME = {idea.name: idea for idea in IDEAS}


@dataclass(frozen=True)
class LookAlike:
    """A name that matches an idea's pattern but means something else."""

    meaning: str
    where: str | tuple[str, ...] | None = None  # prefixes of the callables using it; None: any

    @property
    def scopes(self) -> tuple[str, ...]:
        return (self.where,) if isinstance(self.where, str) else self.where or ()

    def allows(self, short: str) -> bool:
        return self.where is None or short.startswith(self.scopes)


LOOK_ALIKES = {
    "keepalive_frame": LookAlike("the bytes a keepalive sends, for a format without its own"),
    "heartbeat_seconds": LookAlike(
        "how often a resumable producer proves to Redis that it is alive; nothing is sent to "
        "a client",
        "resume.ResumableStreams",
    ),
    "connect_timeout": LookAlike("seconds to connect to the upstream service", "upstream_stream"),
    "read_timeout": LookAlike(
        "seconds the upstream service may be silent, before its headers too (then a 504)",
        "upstream_stream",
    ),
    "header_filter": LookAlike("a function that rewrites or drops proxied header fields"),
    "forwarded_headers": LookAlike("whether to add `X-Forwarded-*` upstream"),
    "shutdown_event": LookAlike("the SSE event sent when the server shuts down"),
    "shutdown_frame": LookAlike("the bytes sent when the server shuts down"),
    "timeout": LookAlike("the test client's own timeout (httpx), not the server's", "testing."),
    "headers_at": LookAlike("when the response headers arrived, in a recording", "testing."),
    "thread_id": LookAlike(
        'the AG-UI conversation thread an answer belongs to (`format="ag-ui"`), not a worker '
        "thread",
        ("llm_stream", "resume.ResumableStreams.llm_response"),
    ),
    "header_row": LookAlike("whether a CSV starts with a row of names (RFC 4180)", "table_stream"),
}


@dataclass(frozen=True)
class OldName:
    new: str
    callables: tuple[str, ...]


OLD_NAMES = {
    "ping": OldName(
        "keepalive",
        (
            "sse_response",
            "llm_stream",
            "resume.ResumableStreams.sse_response",
            "resume.ResumableStreams.llm_response",
        ),
    ),
    "limiter": OldName("thread_limiter", ("iterate_in_thread",)),
    "graceful_shutdown_seconds": OldName("shutdown_grace_seconds", ("testing.LiveServer",)),
}

# A name that several callables share has one default, or a reason for each other one.
SHARED_DEFAULTS: dict[str, tuple[set[Any], str]] = {
    "media_type": (
        {"text/plain", None},
        "`stream_response` sends text unless told; `None`: the class's own, or the object's",
    ),
    "status_code": ({200, 500}, "a response's status, or (`StreamError`) an error's"),
    "event": ({None, "message"}, "no field sent, or (`ParsedEvent`) the type a browser sees"),
    "prefix": ({"faststream-kit:", "faststream-kit-demo/"}, "Redis keys, or the demo's S3 keys"),
    "format": ({"sse", "csv"}, "an LLM answer's wire format, or (`table_stream`) a table's"),
}

# ``Any`` says nothing: only where no type can be named without importing an optional SDK.
ANY_ALLOWED = {
    "client": "an SDK's client (aiobotocore, boto3, httpx, aiohttp), recognised by its methods",
    "http_client": "s3_stream's fast path: a pyreqwest Client, an optional dependency",
    "redis": "redis.asyncio's Redis or RedisCluster, an optional dependency",
    "params": "query parameters in any form the HTTP client takes",
    "app": "a FastAPI app; FastAPI is an optional dependency",
}

OPTIONS_OF_THE_CONSTRUCTOR = {"with_options"}
"""``**options`` that are the class's own constructor arguments, checked against its signature
(which this test checks): ``ping=`` is a ``TypeError`` there (tests/test_fastapi_yield.py)."""


# --- the checks ------------------------------------------------------------------------------


def union_members(hint: Any) -> set[Any]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return set(typing.get_args(hint))
    return {hint}


def old_names_taken(public: Public, hint: Any) -> set[str]:
    """The keys of ``**deprecated: Unpack[OldNames]``."""
    if typing.get_origin(hint) is not typing.Unpack:
        return set()
    (typed_dict,) = typing.get_args(hint)
    return set(typing.get_type_hints(typed_dict))


def problems_of(public: Public) -> list[str]:
    """Everything in ``public``'s signature that breaks the decision, as sentences."""
    problems: list[str] = []
    hints = public.hints()
    names = {p.name for p in public.parameters}
    for parameter in public.parameters:
        name = parameter.name
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            taken = old_names_taken(public, hints.get(name))
            documented = {old for old, o in OLD_NAMES.items() if public.short in o.callables}
            if public.short.rpartition(".")[2] in OPTIONS_OF_THE_CONSTRUCTOR:
                continue
            if typing.get_origin(hints.get(name)) is not typing.Unpack:
                problems.append(
                    f"**{name} must be Unpack[a TypedDict of old names]: any other **kwargs "
                    "would accept a second name for an idea"
                )
            elif taken != documented:
                problems.append(
                    f"**{name} takes the old names {sorted(taken)}, OLD_NAMES documents "
                    f"{sorted(documented)} (a **kwargs is only for documented old names)"
                )
            continue
        idea = IDEA_BY_NAME.get(name)
        if idea is not None:
            problems.extend(_differences(public, parameter, hints.get(name, Any), idea))
            continue
        if name in OLD_NAMES:
            problems.append(
                f"{name} is the old name of {OLD_NAMES[name].new}: take it only through "
                "**deprecated (see OLD_NAMES)"
            )
            continue
        if hints.get(name) is Any and name not in ANY_ALLOWED:
            problems.append(f"{name} is typed Any: say what it accepts (ANY_ALLOWED otherwise)")
        for other in IDEAS:
            if not any(re.fullmatch(other.looks_like, word) for word in name.split("_")):
                continue
            look_alike = LOOK_ALIKES.get(name)
            if look_alike is None or not look_alike.allows(public.short):
                problems.append(
                    f"{name} looks like the idea {other.idea!r}, whose name is {other.name}: "
                    "use that name, or add it to LOOK_ALIKES saying what else it means"
                )
            break
    for idea in IDEAS:
        if idea.required(public) and idea.name not in names:
            problems.append(f"has no {idea.name} ({idea.idea}; who takes it: {idea.where})")
    return problems


def _differences(public: Public, parameter: inspect.Parameter, hint: Any, idea: Idea) -> list[str]:
    found = []
    expected = idea.exceptions.get(public.short, (idea.default, ""))[0]
    default = parameter.default
    if default is not inspect.Parameter.empty and not (
        default == expected and (default is None) == (expected is None)
    ):
        found.append(f"{idea.name} defaults to {default!r}, the decision is {expected!r}")
    members = union_members(hint)
    wanted = set(idea.types)
    if default is inspect.Parameter.empty:
        wanted.discard(NONE)  # a required field of a record, not an option
    if not (members == wanted if idea.exact else wanted <= members):
        found.append(f"{idea.name} is typed {hint}, the decision is {idea.shown_type}")
    return found


@pytest.mark.parametrize("public", [pytest.param(public, id=public.short) for public in PUBLIC])
def test_each_idea_has_one_name_one_default_and_one_type(public: Public) -> None:
    found = problems_of(public)
    assert not found, f"{public.name}:\n" + "\n".join(found)


def test_the_walk_sees_every_helper_and_the_resumable_methods() -> None:
    helpers = {public.short for public in PUBLIC if public.helper}
    assert {
        "StreamResponse",
        "stream_response",
        "sse_response",
        "llm_stream",
        "s3_stream",
        "zip_stream",
        "upstream_stream",
        "table_stream",
        "resume.ResumableStreams.sse_response",
        "resume.ResumableStreams.llm_response",
    } <= helpers
    walked = {public.short for public in PUBLIC}
    assert {"iterate_in_thread", "testing.LiveServer", "testing.record_chunks"} <= walked


def test_one_name_shared_by_several_callables_has_one_default() -> None:
    defaults: dict[str, dict[Any, list[str]]] = {}
    for public in PUBLIC:
        for parameter in public.parameters:
            if parameter.name in IDEA_BY_NAME or parameter.default is inspect.Parameter.empty:
                continue
            shown = defaults.setdefault(parameter.name, {})
            shown.setdefault(_hashable(parameter.default), []).append(public.short)
    conflicts = {}
    for name, seen in defaults.items():
        allowed = SHARED_DEFAULTS.get(name, (set(), ""))[0]
        if len(seen) > 1 and not set(seen) <= {_hashable(value) for value in allowed}:
            conflicts[name] = seen
    assert conflicts == {}


def test_the_tables_name_only_callables_that_exist() -> None:
    walked = {public.short for public in PUBLIC}
    named = {short for idea in IDEAS for short in idea.exceptions}
    named |= {short for old in OLD_NAMES.values() for short in old.callables}
    assert named - walked == set()
    scopes = {scope for alike in LOOK_ALIKES.values() for scope in alike.scopes}
    assert {s for s in scopes if not any(short.startswith(s) for short in walked)} == set()


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


# --- the checks catch what they are for ------------------------------------------------------


def _fake(function: Callable[..., Any], *, helper: bool = True, short: str = "fake") -> Public:
    return Public(f"faststream_kit.{short}", function, _parameters(function, bound=False), helper)


def _complete_helper(
    *,
    keepalive: float | None = 15.0,
    send_timeout: float | None = 30.0,
    idle_timeout: float | None = None,
    thread_limiter: anyio.CapacityLimiter | None = None,
    headers: Mapping[str, str] | None = None,
    request: Request | None = None,
) -> None:
    """What a new helper looks like when it follows the table."""


def _with_ping(*, ping: float | None = 15.0) -> None: ...


def _with_keepalive_seconds(*, keepalive_seconds: float = 15.0) -> None: ...


def _with_timeout(*, timeout: float | None = 30.0) -> None: ...


def _with_limiter(*, limiter: anyio.CapacityLimiter | None = None) -> None: ...


def _with_send_timeout_none(*, send_timeout: float | None = None) -> None: ...


def _with_request_any(*, request: Any = None) -> None: ...


def _with_kwargs(**options: Any) -> None: ...


def test_the_checks_pass_a_helper_that_follows_the_table() -> None:
    assert problems_of(_fake(_complete_helper)) == []


@pytest.mark.parametrize(
    ("function", "complaint"),
    [
        pytest.param(function, complaint, id=function.__name__.removeprefix("_"))
        for function, complaint in [
            (_with_ping, "ping is the old name of keepalive"),
            (_with_keepalive_seconds, "keepalive_seconds looks like the idea 'keepalive"),
            (_with_timeout, "timeout looks like the idea 'send timeout"),
            (_with_limiter, "limiter is the old name of thread_limiter"),
            (_with_send_timeout_none, "send_timeout defaults to None, the decision is 30.0"),
            (_with_request_any, "request is typed typing.Any"),
            (_with_kwargs, "**options must be Unpack[a TypedDict of old names]"),
        ]
    ],
)
def test_the_checks_catch_a_second_name_or_default(
    function: Callable[..., Any], complaint: str
) -> None:
    found = problems_of(_fake(function, helper=False))
    assert any(problem.startswith(complaint) for problem in found), found


def test_the_checks_catch_a_helper_without_an_idea() -> None:
    def bare(content: list[bytes]) -> None: ...

    missing = {problem.split()[2] for problem in problems_of(_fake(bare))}
    assert missing == {
        "keepalive",
        "send_timeout",
        "idle_timeout",
        "thread_limiter",
        "headers",
        "request",
    }


# --- old names: one release, with a warning --------------------------------------------------


class _Redis:
    """Enough of an asyncio Redis client to build responses; none of them touches it."""

    async def execute_command(self, *args: Any) -> None: ...
    async def eval(self, *args: Any) -> None: ...
    async def xadd(self, *args: Any) -> None: ...
    async def xread(self, *args: Any) -> None: ...
    async def exists(self, *args: Any) -> None: ...
    def pipeline(self, *args: Any) -> None: ...


def _app(scope: Any, receive: Any, send: Any) -> None: ...


CALLS: dict[str, Callable[..., Any]] = {
    "sse_response": lambda **options: sse_response([], **options),
    "llm_stream": lambda **options: llm_stream([], **options),
    "resume.ResumableStreams.sse_response": lambda **options: ResumableStreams(
        _Redis()
    ).sse_response("key", **options),
    "resume.ResumableStreams.llm_response": lambda **options: ResumableStreams(
        _Redis()
    ).llm_response("key", **options),
    "iterate_in_thread": lambda **options: iterate_in_thread([], **options),
    "testing.LiveServer": lambda **options: LiveServer(_app, **options),
}

# An old value, what the new parameter must then be, and a value the old name's rule refuses.
OLD_VALUES: dict[str, tuple[Any, Callable[[Any], Any], Any]] = {
    "ping": (5, lambda response: response.keepalive, -1),
    "limiter": (anyio.CapacityLimiter(1), lambda iterator: iterator._limiter, 4),
    "graceful_shutdown_seconds": (7.0, lambda server: server.shutdown_grace_seconds, -1),
}

OLD_CALLS = [
    pytest.param(old, short, id=f"{short}({old}=)")
    for old, o in OLD_NAMES.items()
    for short in o.callables
]


@pytest.mark.parametrize(("old", "short"), OLD_CALLS)
def test_an_old_name_is_taken_through_the_deprecated_keywords(old: str, short: str) -> None:
    public = by_name(short)
    (var_keyword,) = [p for p in public.parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
    hints = public.hints()
    assert old in old_names_taken(public, hints[var_keyword.name])
    (typed_dict,) = typing.get_args(hints[var_keyword.name])
    new = OLD_NAMES[old].new
    assert typing.get_type_hints(typed_dict)[old] == hints[new], (
        "the old name's type is the new one's"
    )


@pytest.mark.parametrize(("old", "short"), OLD_CALLS)
def test_an_old_name_works_and_warns_naming_the_new_one(old: str, short: str) -> None:
    value, new_value_of, _ = OLD_VALUES[old]
    with pytest.warns(DeprecationWarning, match=f"^{old} is deprecated") as caught:
        made = CALLS[short](**{old: value})
    assert [str(w.message) for w in caught] == [f"{old} is deprecated; use {OLD_NAMES[old].new}"]
    assert caught[0].filename == __file__, "the warning points at the caller's line"
    assert new_value_of(made) == value


@pytest.mark.parametrize(("old", "short"), OLD_CALLS)
def test_an_old_name_is_checked_under_that_name(old: str, short: str) -> None:
    _, _, bad = OLD_VALUES[old]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises((TypeError, ValueError)) as caught:
            CALLS[short](**{old: bad})
    assert str(caught.value).startswith(old)


@pytest.mark.parametrize(("old", "short"), OLD_CALLS)
def test_an_old_name_with_the_new_one_is_a_type_error(old: str, short: str) -> None:
    value, _, _ = OLD_VALUES[old]
    with pytest.raises(TypeError) as caught:
        CALLS[short](**{old: value, OLD_NAMES[old].new: value})
    assert (
        str(caught.value)
        == f"{old} is the deprecated name of {OLD_NAMES[old].new}: pass {OLD_NAMES[old].new} only"
    )


@pytest.mark.parametrize("short", sorted(CALLS))
def test_a_misspelt_keyword_is_still_a_type_error(short: str) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'keepalvie'"):
        CALLS[short](keepalvie=5)


def test_ping_zero_still_turns_keepalives_off() -> None:
    with pytest.warns(DeprecationWarning, match="^ping is deprecated; use keepalive$"):
        assert sse_response([], ping=0).keepalive is None


def test_the_old_limiter_is_the_one_the_thread_holds() -> None:
    limiter = anyio.CapacityLimiter(1)

    async def first_item() -> float:
        with pytest.warns(DeprecationWarning, match="^limiter is deprecated"):
            items = iterate_in_thread(iter([1, 2]), limiter=limiter)
        try:
            await items.__anext__()
            return limiter.borrowed_tokens
        finally:
            await items.aclose()

    assert anyio.run(first_item) == 1


# --- the keepalive default belongs to the format ---------------------------------------------


@pytest.mark.parametrize(
    ("make", "keepalive"),
    [
        pytest.param(lambda: stream_response([]), None, id="text"),
        pytest.param(
            lambda: stream_response([], media_type="application/octet-stream"), None, id="bytes"
        ),
        pytest.param(
            lambda: stream_response([], media_type="application/x-ndjson"), 15.0, id="ndjson"
        ),
        pytest.param(lambda: stream_response([], media_type="text/event-stream"), 15.0, id="sse"),
        pytest.param(lambda: sse_response([]), 15.0, id="sse_response"),
        pytest.param(lambda: llm_stream([], format="text"), None, id="llm-text"),
        pytest.param(lambda: llm_stream([], format="ndjson"), 15.0, id="llm-ndjson"),
        pytest.param(lambda: llm_stream([], format="ui"), 15.0, id="llm-ui"),
    ],
)
def test_the_default_keepalive_is_sent_only_where_the_format_has_keepalive_bytes(
    make: Callable[[], Any], keepalive: float | None
) -> None:
    assert make().keepalive == keepalive


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: stream_response([], keepalive=5), id="stream_response"),
        pytest.param(lambda: llm_stream([], format="text", keepalive=5), id="llm_stream"),
    ],
)
def test_an_explicit_keepalive_on_a_format_without_keepalive_bytes_is_refused(
    make: Callable[[], Any],
) -> None:
    with pytest.raises(ValueError, match=r"^keepalive "):
        make()


# --- every public type is exported and typed -------------------------------------------------


def _defined_in_our_modules() -> dict[int, str]:
    """id of each module-level name our modules assign or define -> its name."""
    defined: dict[int, str] = {}
    for path in SOURCE.rglob("*.py"):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        module = importlib.import_module(".".join(p for p in parts if p != "__init__"))
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets = [node.target.id]
            elif isinstance(node, ast.ClassDef):
                targets = [node.name]
            else:
                continue
            for target in targets:
                if target in vars(module):
                    defined[id(vars(module)[target])] = target
    return defined


# Aliases of plain iterables and callables that every matching object satisfies: a user
# never needs their names, and the docs show what they stand for.
STRUCTURAL_ALIASES = {
    *("Content", "SourceFactory", "Encoder", "Events", "EventsFactory", "Header"),
    *("ZipBody", "ZipMembers"),
}


def test_every_type_in_a_public_signature_is_exported() -> None:
    exported = {id(getattr(m, n)) for m in public_modules() for n in m.__all__}
    ours = _defined_in_our_modules()
    missing: dict[str, str] = {}
    for public in PUBLIC:
        namespace = public.function.__globals__
        annotations = [p.annotation for p in public.parameters]
        annotations.append(inspect.signature(public.function).return_annotation)
        for annotation in annotations:
            if not isinstance(annotation, str):
                continue
            for word in set(re.findall(r"[A-Za-z_]\w*", annotation)):
                obj = namespace.get(word)
                if obj is None or id(obj) not in ours or id(obj) in exported:
                    continue
                if isinstance(obj, typing.TypeVar) or word in STRUCTURAL_ALIASES:
                    continue
                if annotation.startswith("Unpack["):
                    continue  # the old names of a deprecated parameter
                missing[word] = public.short
    assert missing == {}


@pytest.mark.parametrize(
    "name",
    [
        "Completion",
        "ToolCall",
        "OnComplete",
        "ErrorFrame",
        "ErrorType",
        "ERRORS",
        "HeaderFilter",
        "LLMFormat",
        "LLMSource",
        "ThreadIterator",
        "default_thread_limiter",
    ],
)
def test_the_public_types_are_exported_from_the_package(name: str) -> None:
    assert name in faststream_kit.__all__
    assert getattr(faststream_kit, name) is not None


def test_no_doc_or_example_imports_a_private_module() -> None:
    private = re.compile(r"\bfaststream_kit\._\w+")
    files = [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "examples").glob("*.py")),
    ]
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert found == []


# --- the table in docs/design.md -------------------------------------------------------------

BEGIN = "<!-- names: begin (rendered by tests/test_signatures.py; edit the tables there) -->"
END = "<!-- names: end -->"


def _shown(value: Any) -> str:
    return f"`{value!r}`"


def rendered_tables() -> str:
    lines = [
        "| idea | parameter | type | default | where |",
        "| --- | --- | --- | --- | --- |",
    ]
    for idea in IDEAS:
        default = _shown(idea.default)
        for short, (value, why) in idea.exceptions.items():
            default += f"; `{short}`: {_shown(value)} ({why})"
        # "or", not "|": a "|" ends a table cell, also inside a code span on some renderers.
        shown_type = " or ".join(f"`{name}`" for name in idea.shown_type.split(" | "))
        lines.append(f"| {idea.idea} | `{idea.name}` | {shown_type} | {default} | {idea.where} |")
    lines += [
        "",
        "Old names, accepted until the next release with a `DeprecationWarning` that names the "
        "new one (both at once: `TypeError`):",
        "",
        "| old name | new name | in |",
        "| --- | --- | --- |",
    ]
    for old, o in OLD_NAMES.items():
        places = ", ".join(f"`{short}`" for short in o.callables)
        lines.append(f"| `{old}` | `{o.new}` | {places} |")
    lines += [
        "",
        "Names that look like one of these ideas but mean something else:",
        "",
        "| parameter | means | in |",
        "| --- | --- | --- |",
    ]
    for name, look_alike in LOOK_ALIKES.items():
        place = ", ".join(f"`{scope.rstrip('.')}`" for scope in look_alike.scopes) or "any"
        lines.append(f"| `{name}` | {look_alike.meaning} | {place} |")
    return "\n".join(lines)


def test_the_table_in_the_design_docs_is_the_one_the_code_is_checked_against() -> None:
    text = DESIGN.read_text()
    assert BEGIN in text, f"docs/design.md lacks the {BEGIN} ... {END} block"
    assert END in text
    documented = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert documented == rendered_tables()
