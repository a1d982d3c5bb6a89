"""The SSE wire format: what `sse_frame()` writes is what a strict WHATWG parser reads back."""

from __future__ import annotations

import codecs
import dataclasses
import itertools
import json

import pytest
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from hypothesis import example, given, settings
from hypothesis import strategies as st

from faststream_kit._sse import PING_FRAME, ServerSentEvent, sse_frame
from faststream_kit.testing._sse_parser import ParsedEvent, SSEParser, parse_events

# --- strategies --------------------------------------------------------------------------------

# Hypothesis text never contains lone surrogates, so every value here is encodable.
_TRICKY = ["\r", "\n", "\r\n", "\n\n", "\r\r", "\r\n\r\n", "日本語", "🎉", "\ufeff", "\x00",
           ":", " ", "data: x", "\u2028", "\x0b", "é"]  # fmt: skip
texts = st.lists(st.one_of(st.text(max_size=8), st.sampled_from(_TRICKY)), max_size=6).map("".join)
single_line = texts.map(lambda s: s.replace("\r", "").replace("\n", ""))
event_names = st.none() | single_line
ids = st.none() | single_line.map(lambda s: s.replace("\0", ""))
retries = st.none() | st.integers(min_value=0, max_value=10**12)
comments = st.none() | texts
frames_kwargs = st.fixed_dictionaries(
    {"data": texts, "event": event_names, "id": ids, "retry": retries, "comment": comments}
)


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _expected(kwargs: dict[str, object], last_id: str | None = None) -> ParsedEvent:
    """What a spec-following client dispatches for one frame (None data dispatches nothing)."""
    data = kwargs["data"]
    assert isinstance(data, str)
    event_id = kwargs.get("id")
    return ParsedEvent(
        # CR and CRLF arrive as LF: the client joins data lines with LF.
        data="\n".join(_lines(data)),
        event=kwargs.get("event") or "message",  # type: ignore[arg-type]
        id=last_id if event_id is None else event_id,  # type: ignore[arg-type]
        retry=kwargs.get("retry"),  # type: ignore[arg-type]
    )


def _parse_in_chunks(stream: bytes, cuts: list[int]) -> tuple[list[ParsedEvent], SSEParser]:
    parser = SSEParser()
    events: list[ParsedEvent] = []
    bounds = [0, *sorted(cuts), len(stream)]
    for start, end in itertools.pairwise(bounds):
        events += parser.feed(stream[start:end])
    events += parser.close()
    return events, parser


# --- encoding: plain text ------------------------------------------------------------------------


def test_str_data_is_one_data_line_with_a_space_after_the_colon() -> None:
    assert sse_frame("hello") == b"data: hello\n\n"


def test_data_starting_with_a_space_keeps_it() -> None:
    assert sse_frame(" hi") == b"data:  hi\n\n"
    assert parse_events(sse_frame(" hi")) == [ParsedEvent(data=" hi")]


def test_empty_string_data_still_dispatches_an_empty_event() -> None:
    assert sse_frame("") == b"data:\n\n"
    assert parse_events(sse_frame("")) == [ParsedEvent(data="")]


@pytest.mark.parametrize("newline", ["\n", "\r", "\r\n"])
def test_each_newline_kind_splits_data_into_lines(newline: str) -> None:
    assert sse_frame(f"a{newline}b") == b"data: a\ndata: b\n\n"


def test_empty_lines_inside_data_are_kept() -> None:
    assert sse_frame("a\n\nb\n") == b"data: a\ndata:\ndata: b\ndata:\n\n"
    assert parse_events(sse_frame("a\n\nb\n")) == [ParsedEvent(data="a\n\nb\n")]


def test_only_cr_and_lf_split_lines_not_other_unicode_breaks() -> None:
    assert sse_frame("a\u2028b\x0bc\x0cd") == "data: a\u2028b\x0bc\x0cd\n\n".encode()


def test_non_ascii_data_is_utf8() -> None:
    assert sse_frame("日本語 🎉") == "data: 日本語 🎉\n\n".encode()


def test_bytes_data_is_decoded_as_utf8() -> None:
    assert sse_frame("é\nx".encode()) == "data: é\ndata: x\n\n".encode()


def test_field_order_is_comment_event_id_retry_data() -> None:
    frame = sse_frame("x", event="tick", id="7", retry=3000, comment="hello\nworld")
    assert frame == b": hello\n: world\nevent: tick\nid: 7\nretry: 3000\ndata: x\n\n"


def test_empty_event_and_id_are_bare_field_names() -> None:
    assert sse_frame("x", event="", id="") == b"event:\nid:\ndata: x\n\n"


def test_no_data_writes_no_data_line_and_dispatches_nothing() -> None:
    frame = sse_frame(id="5", retry=10)
    assert frame == b"id: 5\nretry: 10\n\n"
    parser = SSEParser()
    assert parser.feed(frame) == []
    assert (parser.last_event_id, parser.retry) == ("5", 10)


def test_ping_frame_is_a_comment_that_dispatches_nothing() -> None:
    parser = SSEParser()
    assert parser.feed(PING_FRAME) == []
    assert parser.comments == ["ping"]


# --- encoding: JSON ------------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    label: str


class PydanticLike:
    """Duck-typed like a pydantic v2 model: only model_dump_json() and model_dump()."""

    def model_dump_json(self) -> str:
        return '{"ok":true}'

    def model_dump(self, mode: str = "python") -> dict[str, object]:
        return {"ok": True}


@pytest.mark.parametrize(
    ("data", "json_text"),
    [
        ({"a": 1, "b": [1, 2]}, '{"a":1,"b":[1,2]}'),
        ([1, "x", None], '[1,"x",null]'),
        ((1, 2), "[1,2]"),
        (Point(1, "é"), '{"x":1,"label":"é"}'),
        (PydanticLike(), '{"ok":true}'),
        (
            {"nested": [Point(2, "p"), PydanticLike()]},
            '{"nested":[{"x":2,"label":"p"},{"ok":true}]}',
        ),
        (42, "42"),
        (1.5, "1.5"),
        (True, "true"),
        ({"text": "a\nb"}, '{"text":"a\\nb"}'),
    ],
)
def test_structured_data_becomes_compact_json(data: object, json_text: str) -> None:
    assert sse_frame(data) == f"data: {json_text}\n\n".encode()


def test_real_pydantic_model_becomes_compact_json() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Token(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        text: str
        index: int

    frame = sse_frame(Token(text="日本", index=3))
    assert frame == 'data: {"text":"日本","index":3}\n\n'.encode()
    assert json.loads(parse_events(frame)[0].data) == {"text": "日本", "index": 3}


# --- encoding: invalid input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"event": "a\nb"}, "event must not contain CR or LF"),
        ({"event": "a\rb"}, "event must not contain CR or LF"),
        ({"id": "1\n"}, "id must not contain CR or LF"),
        ({"id": "1\x002"}, "id must not contain NUL"),
        ({"retry": -1}, "retry must not be negative"),
        ({"retry": True}, "retry must be an int"),
        ({"retry": 1.5}, "retry must be an int"),
        ({"retry": "100"}, "retry must be an int"),
        ({"event": 3}, "event must be a str"),
        ({"data": "\ud800"}, "data must be valid Unicode"),
        ({"data": "a\n\udfff"}, "data must be valid Unicode"),
        ({"data": "x", "event": "\ud800"}, "event must be valid Unicode"),
        ({"data": "x", "id": "\udc00"}, "id must be valid Unicode"),
        ({"data": "x", "comment": "\udc00"}, "comment must be valid Unicode"),
        ({"data": b"\xff"}, "data bytes must be valid UTF-8"),
        ({"data": {"k": object()}}, "data must be str, bytes or JSON-serialisable"),
        ({"data": float("nan")}, "data must be str, bytes or JSON-serialisable"),
        ({"data": {"k": "\ud800"}}, "data must be valid Unicode"),
    ],
)
def test_invalid_field_raises_value_error_naming_it(
    kwargs: dict[str, object], message: str
) -> None:
    data = kwargs.pop("data", "x")
    with pytest.raises(ValueError, match=message):
        sse_frame(data, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        ServerSentEvent(data, **kwargs)  # type: ignore[arg-type]


@given(
    field=st.sampled_from(["event", "id"]),
    value=st.tuples(single_line, st.sampled_from(["\r", "\n", "\r\n"]), single_line).map("".join),
)
def test_any_line_break_in_event_or_id_is_rejected(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must not contain CR or LF"):
        sse_frame("x", **{field: value})  # type: ignore[arg-type]


@given(st.integers(max_value=-1))
def test_any_negative_retry_is_rejected(retry: int) -> None:
    with pytest.raises(ValueError, match=r"^retry must not be negative"):
        sse_frame("x", retry=retry)


@given(
    field=st.sampled_from(["data", "event", "id", "comment"]),
    surrogate=st.characters(categories=["Cs"]),
    text=single_line.map(lambda s: s.replace("\0", "")),
)
def test_any_lone_surrogate_is_rejected_naming_its_field(
    field: str, surrogate: str, text: str
) -> None:
    kwargs: dict[str, object] = {"data": "x", field: text + surrogate}
    with pytest.raises(ValueError, match=rf"^{field} must be valid Unicode"):
        sse_frame(**kwargs)  # type: ignore[arg-type]


# --- ServerSentEvent ---------------------------------------------------------------------------


def test_server_sent_event_encodes_like_sse_frame() -> None:
    event = ServerSentEvent({"a": 1}, event="e", id="1", retry=5, comment="c")
    assert event.encode() == sse_frame({"a": 1}, event="e", id="1", retry=5, comment="c")


def test_server_sent_event_is_immutable_and_compares_by_fields() -> None:
    event = ServerSentEvent("x", id="1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.id = "2"  # type: ignore[misc]
    assert event == ServerSentEvent("x", id="1")
    assert dataclasses.replace(event, id="2").encode() == b"id: 2\ndata: x\n\n"


# --- round trip through the strict parser ------------------------------------------------------


@settings(max_examples=200)
@given(frames_kwargs)
@example({"data": "", "event": None, "id": None, "retry": None, "comment": None})
@example({"data": "a\r\nb\r", "event": " x", "id": "", "retry": 0, "comment": "\r\n"})
def test_parser_recovers_what_sse_frame_encoded(kwargs: dict[str, object]) -> None:
    frame = sse_frame(**kwargs)  # type: ignore[arg-type]
    parser = SSEParser()
    assert parser.feed(frame) + parser.close() == [_expected(kwargs)]
    assert parser.comments == ([] if kwargs["comment"] is None else _lines(kwargs["comment"]))  # type: ignore[arg-type]


@settings(max_examples=100)
@given(frames_kwargs)
@example({"data": "日\r\n🎉", "event": None, "id": None, "retry": None, "comment": None})
def test_parser_recovers_the_frame_whatever_the_chunk_boundary(kwargs: dict[str, object]) -> None:
    frame = sse_frame(**kwargs)  # type: ignore[arg-type]
    # Every split point, including inside a multibyte character and between CR and LF.
    for cut in range(len(frame) + 1):
        events, _ = _parse_in_chunks(frame, [cut])
        assert events == [_expected(kwargs)], cut


@settings(max_examples=100)
@given(
    st.lists(frames_kwargs | frames_kwargs.map(lambda kw: {**kw, "data": None}), max_size=5),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_concatenated_frames_split_anywhere_parse_back(
    frames: list[dict[str, object]], cuts: list[int]
) -> None:
    stream = b"".join(sse_frame(**kw) for kw in frames)  # type: ignore[arg-type]
    expected: list[ParsedEvent] = []
    last_id: str | None = None
    for kw in frames:
        if kw["data"] is not None:
            expected.append(_expected(kw, last_id))
        if kw["id"] is not None:
            last_id = kw["id"]  # type: ignore[assignment]
    events, parser = _parse_in_chunks(stream, [c for c in cuts if c <= len(stream)])
    assert events == expected
    assert parser.last_event_id == last_id


@settings(max_examples=100)
@given(texts)
def test_a_newline_in_data_never_produces_a_second_event(data: str) -> None:
    events = parse_events(sse_frame(data) + sse_frame("next"))
    assert [e.data for e in events] == ["\n".join(_lines(data)), "next"]


# --- the parser on its own ---------------------------------------------------------------------


def test_parser_discards_an_event_unfinished_at_end_of_stream() -> None:
    assert parse_events(b"data: a\n\ndata: b\n") == [ParsedEvent(data="a")]


def test_parser_strips_one_leading_bom_only_at_stream_start() -> None:
    assert parse_events(b"\xef\xbb\xbfdata: a\n\n") == [ParsedEvent(data="a")]
    # A second BOM is part of the first line's field name, so the field is unknown.
    assert parse_events(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n") == []


def test_parser_treats_cr_then_lf_in_the_next_chunk_as_one_line_ending() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\n\r") == [ParsedEvent(data="a\nb")]


def test_parser_field_rules() -> None:
    stream = (
        b"data\n"  # no colon: field "data", empty value
        b"data:x\n"  # no space after the colon
        b"id: 1\x002\n"  # NUL: ignored
        b"retry: 12a\n"  # not all digits: ignored
        b"retry: \xd9\xa3\n"  # ARABIC-INDIC DIGIT THREE is not an ASCII digit
        b"bogus: 1\n"  # unknown field: ignored
        b"event: e\n\n"
        b"data: after\n\n"  # event type reset after dispatch
    )
    parser = SSEParser()
    assert parser.feed(stream) == [
        ParsedEvent(data="\nx", event="e"),
        ParsedEvent(data="after"),
    ]
    assert (parser.last_event_id, parser.retry) == (None, None)


def test_parser_replaces_invalid_utf8() -> None:
    assert parse_events(b"data: \xff\n\n") == [ParsedEvent(data="\ufffd")]


def test_parser_refuses_feed_after_close() -> None:
    parser = SSEParser()
    parser.close()
    with pytest.raises(RuntimeError):
        parser.feed(b"data: x\n\n")


# --- an independent client reads the same frames ----------------------------------------------

# httpx-sse's decoder, the SSE client most FastAPI tests use, departs from the spec in ways
# our frames must avoid before the two can be compared:
# - it dispatches a block with no `data` line (spec: "If the data buffer is an empty string
#   ... return"), and once any id was seen it dispatches even a comment-only block such as a
#   ping, as an empty event; so every frame here carries data;
# - it does not strip a leading BOM (our frames never start with one);
# - it reads `retry` with int(), accepting "+5", " 5" and non-ASCII digits (ours are digits).


def _httpx_sse_events(stream: bytes, cuts: list[int]) -> list[ParsedEvent]:
    text_decoder = codecs.getincrementaldecoder("utf-8")()
    lines, sse = SSELineDecoder(), SSEDecoder()
    events: list[ParsedEvent] = []
    bounds = [0, *sorted(cuts), len(stream)]
    for start, end in itertools.pairwise(bounds):
        text = text_decoder.decode(stream[start:end], final=end == len(stream))
        for line in lines.decode(text) if text else []:
            event = sse.decode(line)
            if event is not None:
                events.append(ParsedEvent(event.data, event.event, event.id or None, event.retry))
    return events


@settings(max_examples=100)
@given(
    st.lists(frames_kwargs, max_size=5),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_httpx_sse_reads_our_frames_like_the_strict_parser(
    frames: list[dict[str, object]], cuts: list[int]
) -> None:
    # httpx-sse has no "never set" id, only "": compare on that footing.
    frames = [kw for kw in frames if kw["id"] != ""]
    stream = b"".join(sse_frame(**kw) for kw in frames)  # type: ignore[arg-type]
    cuts = [c for c in cuts if c <= len(stream)]
    assert _httpx_sse_events(stream, cuts) == _parse_in_chunks(stream, cuts)[0]
