"""Every request-header parser is total: any text in, a sane answer out, never an exception.

Two halves. The parsers themselves get arbitrary ``str`` (control characters, lone
surrogates, huge digit runs) and field-shaped text (``bytes=`` specs, entity tags, dates,
``q`` values) and must return a value that keeps its promises (a range with
``first <= last``, a ``Content-Disposition`` that is one latin-1 line). Then the same kind of
values go, as real request headers, through live ``s3_stream``, ``upstream_stream`` and
``sse_response`` routes in uvicorn: no 5xx, a well-formed answer, no injected header.

A real client cannot send CR, LF or NUL in a field value (httpx refuses, and so does every
server), so the live half draws from what a client may send (RFC 9110 §5.5: visible ASCII,
space and tab inside the value, and obs-text octets 0x80-0xFF, sent as bytes); a filename
reaches ``Content-Disposition`` through the query string, where CR and LF do arrive.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.responses import Response

from faststream_kit import sse_response
from faststream_kit._hop_by_hop import accepts, coding_qualities
from faststream_kit._http_fields import (
    ByteRange,
    EntityTag,
    content_disposition,
    format_http_date,
    parse_entity_tags,
    parse_http_date,
    parse_range,
)
from faststream_kit._s3 import _Asked
from faststream_kit._sse_response import last_event_id
from faststream_kit.testing import LiveServer, parse_events

from .s3_peers import (
    S3Peer,
    make_app,
    moto_s3_fixture,  # noqa: F401  (fixtures: seaweedfs, moto_s3, s3_peer)
    s3_peer_fixture,  # noqa: F401
    seaweedfs_fixture,  # noqa: F401
)
from .upstream_peers import CLIENT_KINDS, PAYLOAD, Upstream, proxy_app

# --- what a client may send --------------------------------------------------------------------

DIGITS = "0123456789"
# Python refuses int() on more than 4,300 digits (sys.int_info.default_max_str_digits).
long_digits = st.one_of(
    st.text(DIGITS, min_size=1, max_size=25),
    st.integers(4290, 6000).map(lambda n: "9" * n),
    st.integers(4290, 6000).map(lambda n: "0" * n + "7"),  # a small number, written long
)
ows = st.sampled_from(["", " ", "\t", "  "])
range_spec = st.one_of(
    st.builds(lambda a, b: f"{a}-{b}", long_digits, long_digits),
    st.builds(lambda a: f"{a}-", long_digits),
    st.builds(lambda a: f"-{a}", long_digits),
    st.text(DIGITS + "-, \t", max_size=12),
    st.text(max_size=8),
)
range_values = st.builds(
    lambda unit, o1, specs, o2: f"{unit}={o1}{','.join(specs)}{o2}",
    st.sampled_from(["bytes", "BYTES", "Bytes", " bytes ", "bits", "", "bytes\x00"]),
    ows,
    st.lists(range_spec, min_size=0, max_size=4),
    ows,
)

ETAGC = "".join(map(chr, [0x21, *range(0x23, 0x7F), *range(0x80, 0x100)]))
entity_tag = st.builds(
    lambda weak, opaque: f'{"W/" if weak else ""}"{opaque}"', st.booleans(), st.text(ETAGC)
)
etag_values = st.one_of(
    st.just("*"),
    st.lists(entity_tag, max_size=4).map(", ".join),
    st.lists(st.one_of(entity_tag, st.text(ETAGC + ' ,"\t', max_size=6)), max_size=4).map(",".join),
)

DAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Monday", "Xyz"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
zones = st.one_of(
    st.sampled_from(["GMT", "UT", "UTC", "EST", "PDT", "Z", "", "-0000", "+2359", "-2359"]),
    st.builds(lambda sign, n: f"{sign}{n:04d}", st.sampled_from("+-"), st.integers(0, 9999)),
)


def imf_fixdate(moment: datetime, zone: str) -> str:
    """``Sun, 06 Nov 1994 08:49:37 GMT`` with any zone, for any year datetime holds."""
    day = DAY_NAMES[moment.weekday()]
    clock = f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    return f"{day}, {moment.day:02d} {MONTHS[moment.month - 1]} {moment.year:04d} {clock} {zone}"


numbers = st.one_of(
    st.integers(0, 99).map("{:02d}".format), st.integers(0, 10**6).map(str), long_digits
)
date_values = st.one_of(
    # Real moments from year 1 to 9999 with any zone: the edges overflow UTC.
    st.builds(imf_fixdate, st.datetimes(), zones),
    st.builds(imf_fixdate, st.just(datetime.max), zones),
    # IMF-fixdate and the obsolete RFC 850 and asctime forms (RFC 9110 §5.6.7), with numbers
    # out of range.
    st.builds(
        lambda day, d, mon, y, h, m, s, zone: f"{day}, {d} {mon} {y} {h}:{m}:{s} {zone}",
        st.sampled_from(DAY_NAMES),
        numbers,
        st.sampled_from([*MONTHS, "Foo"]),
        st.one_of(st.integers(0, 99999).map(str), long_digits),
        numbers,
        numbers,
        numbers,
        zones,
    ),
    st.builds(
        lambda day, d, mon, y, t: f"{day}, {d:02d}-{mon}-{y:02d} {t} GMT",
        st.sampled_from(DAY_NAMES),
        st.integers(0, 99),
        st.sampled_from(MONTHS),
        st.integers(0, 99),
        st.text(DIGITS + ":", max_size=10),
    ),
    st.builds(
        lambda day, mon, d, t, y: f"{day} {mon} {d:>2} {t} {y}",
        st.sampled_from(DAY_NAMES),
        st.sampled_from(MONTHS),
        st.integers(0, 99),
        st.text(DIGITS + ":", max_size=10),
        st.integers(0, 99999),
    ),
)

qvalues = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e999", "-1", "1.0001", "2", "1_0", "٠.٥"]),
    st.sampled_from(["0", "0.", "0.5", "0.123", "0.1234", "1", "1.", "1.000", "1.001", " 0.5"]),
    st.floats().map(repr),
    st.text(DIGITS + ".-e+", max_size=8),
    long_digits,
)
codings = st.sampled_from(["gzip", "GZip", "x-gzip", "deflate", "br", "zstd", "identity", "*"])
accept_encoding_values = st.lists(
    st.builds(
        lambda coding, q, key: f"{coding};{key}={q}" if q is not None else coding,
        codings,
        st.none() | qvalues,
        st.sampled_from(["q", "Q", " q", "q "]),
    ),
    max_size=4,
).map(", ".join)

# Any str: control characters, lone surrogates (st.text() alone has none), non-BMP.
any_text = st.text(st.characters(codec=None))
field_values = st.one_of(
    any_text,
    range_values,
    etag_values,
    date_values,
    accept_encoding_values,
)

# RFC 9110 §5.5: field-value = *field-content; VCHAR and obs-text, with SP/HTAB inside.
WIRE_OCTETS = "".join(map(chr, [0x09, 0x20, *range(0x21, 0x7F), *range(0x80, 0x100)]))
wire_text = st.text(WIRE_OCTETS, max_size=60)


def sendable(text: str) -> bytes:
    """``text`` as the octets of a field value a client may send: latin-1 without the control
    characters (RFC 9110 §5.5) and without surrounding whitespace, which servers drop anyway
    (RFC 9112 §5.1)."""
    octets = text.encode("latin-1", errors="ignore")
    return re.sub(rb"[\x00-\x08\x0a-\x1f\x7f]", b"", octets).strip(b" \t")


def on_the_wire(headers: dict[str, bytes]) -> dict[bytes, bytes]:
    return {name.encode("ascii"): value for name, value in headers.items()}


def wire_values(targeted: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    return st.one_of(targeted, wire_text).map(sendable)


# --- the parsers ---------------------------------------------------------------------------------

MAX_POSITION = 2**62


@given(st.none() | field_values | range_values.map(lambda v: v.replace("=", "=0-1,", 1)))
def test_parse_range_is_total_and_its_ranges_are_ordered(value: str | None) -> None:
    ranges = parse_range(value)
    assert ranges is None or 1 <= len(ranges) <= 100
    for byte_range in ranges or []:
        if byte_range.suffix is not None:
            assert (byte_range.first, byte_range.last) == (None, None)
            assert 0 <= byte_range.suffix <= MAX_POSITION
        else:
            assert byte_range.first is not None
            assert 0 <= byte_range.first <= MAX_POSITION
            assert byte_range.last is None or byte_range.first <= byte_range.last <= MAX_POSITION
        # What goes to S3 is rebuilt from the numbers, and parses back to the same range.
        assert parse_range(byte_range.header_value()) == [byte_range]
        for size in (0, 1, 1000, MAX_POSITION):
            span = byte_range.resolve(size)
            assert span is None or 0 <= span[0] <= span[1] < size


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 9110 §14.1.2: a first position past the end is unsatisfiable, a last position
        # past it reaches the end, a suffix longer than the representation is all of it.
        ("bytes=" + "9" * 5000 + "-", [ByteRange(first=MAX_POSITION)]),
        ("bytes=0-" + "9" * 5000, [ByteRange(first=0, last=MAX_POSITION)]),
        ("bytes=-" + "9" * 5000, [ByteRange(suffix=MAX_POSITION)]),
        ("bytes=" + "0" * 5000 + "7-" + "0" * 5000 + "9", [ByteRange(first=7, last=9)]),
        ("bytes=" + "9" * 5000 + "-0", None),  # last below first: invalid (§14.1.1)
    ],
    ids=["first", "last", "suffix", "leading-zeros", "last-below-first"],
)
def test_range_positions_longer_than_python_converts_keep_their_meaning(
    value: str, expected: list[ByteRange] | None
) -> None:
    assert parse_range(value) == expected


TAG = re.compile(r'"[\x21\x23-\x7e\x80-\xff]*"')


@given(st.none() | field_values)
def test_entity_tag_parsing_is_total_and_yields_only_well_formed_tags(value: str | None) -> None:
    tags = parse_entity_tags(value)
    assert tags is None or tags == "*" or (isinstance(tags, list) and tags)
    for tag in tags if isinstance(tags, list) else []:
        assert TAG.fullmatch(tag.opaque), tag
    single = EntityTag.parse(value)
    assert single is None or TAG.fullmatch(single.opaque)


@given(st.none() | field_values)
def test_http_date_parsing_is_total_and_yields_a_usable_utc_moment(value: str | None) -> None:
    moment = parse_http_date(value)
    if moment is None:
        return
    # A validator must compare with S3's Last-Modified and go back out as an HTTP-date.
    assert moment.utcoffset() == timedelta(0)
    assert parse_http_date(format_http_date(moment)) is not None
    assert isinstance(moment < datetime.now(UTC), bool)


@pytest.mark.parametrize(
    "value", ["Fri, 31 Dec 9999 23:59:59 -2359", "Fri, 31 Dec 9999 23:30:00 -0100"]
)
def test_a_date_utc_cannot_hold_is_no_date(value: str) -> None:
    assert parse_http_date(value) is None


def test_a_date_with_a_zone_is_the_same_moment_in_utc() -> None:
    moment = parse_http_date("Sun, 06 Nov 1994 09:49:37 +0100")
    assert moment is not None
    assert moment == datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)
    assert moment.tzinfo is UTC


@given(
    if_range=st.none() | field_values,
    last_modified=st.datetimes(timezones=st.just(UTC)),
    ranges=st.none() | range_values.map(parse_range),
)
def test_if_range_evaluation_is_total(
    if_range: str | None, last_modified: datetime, ranges: list[ByteRange] | None
) -> None:
    asked = _Asked(ranges=ranges, if_range=if_range)
    found = {"ETag": '"0123abcd"', "LastModified": last_modified}
    assert isinstance(asked.range_still_applies(found), bool)
    assert asked.single_range is None or isinstance(asked.single_range, ByteRange)


@given(st.none() | field_values, codings)
def test_accept_encoding_qualities_are_qvalues(value: str | None, coding: str) -> None:
    qualities = coding_qualities(value)
    for name, quality in qualities.items():
        assert name
        assert name == name.strip().lower()
        # RFC 9110 §12.4.2: a qvalue is a number from 0 to 1 with at most three decimals.
        assert 0.0 <= quality <= 1.0, (name, quality)
        assert quality == round(quality, 3), (name, quality)
    assert isinstance(accepts(qualities, coding.lower()), bool)


@pytest.mark.parametrize(
    "q", ["nan", "inf", "1e999", "-1", "2", "1.5", "0.0001", "1.0001", "1_0", "٠.٥"]
)
def test_an_invalid_qvalue_refuses_the_coding(q: str) -> None:
    assert not accepts(coding_qualities(f"gzip;q={q}"), "gzip")


def test_x_gzip_is_gzip() -> None:
    """RFC 9110 §8.4.1.3: refusing x-gzip refuses gzip, whatever ``*`` says."""
    assert not accepts(coding_qualities("*, x-gzip;q=0"), "gzip")
    assert accepts(coding_qualities("x-gzip"), "gzip")
    assert accepts(coding_qualities("gzip"), "x-gzip")


@pytest.mark.parametrize("q", ["1", "1.", "1.000", "0.001", "0.5", "0.999", " 0.5"])
def test_a_valid_qvalue_above_zero_accepts_the_coding(q: str) -> None:
    assert accepts(coding_qualities(f"gzip;q={q}"), "gzip")


@given(
    st.one_of(
        st.binary(max_size=80),
        any_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    )
)
def test_last_event_id_is_total_on_any_octets(octets: bytes) -> None:
    found = last_event_id({"type": "http", "headers": [(b"last-event-id", octets)]})
    if found is not None:
        assert found  # an empty field is no id at all
        found.encode("utf-8")  # valid Unicode: no lone surrogates reach the source


@given(
    disposition=st.sampled_from(["inline", "attachment"]),
    filename=st.none()
    | any_text
    | st.text("\r\n\x00\"\\;=*'% abc\ud800\udfff\U0001f600é\u2028", max_size=20),
)
def test_content_disposition_is_one_safe_header_line_for_any_filename(
    disposition: str, filename: str | None
) -> None:
    value = content_disposition(disposition, filename)
    value.encode("latin-1")  # Starlette encodes header values as latin-1
    assert not re.search(r"[\x00-\x1f\x7f]", value), value
    assert value == disposition or value.startswith(f'{disposition}; filename="')
    # Exactly one quoted filename: nothing in the name can end the quoted string early.
    quoted = re.fullmatch(
        r"[a-z]+; filename=\"([^\"\\]*)\"(?:; filename\*=UTF-8''([^;\s\"]+))?", value
    )
    assert value == disposition or quoted is not None, value
    if quoted is not None and quoted.group(2) is not None:
        name = unquote(quoted.group(2), errors="strict")  # RFC 8187: percent-encoded UTF-8
        assert not re.search(r"[\x00-\x1f\x7f-\x9f]", name), name  # dropped, not encoded


HUGE = 1 << 18  # 256 KiB: far past what any server lets into one header


@pytest.mark.parametrize(
    ("parse", "value"),
    [
        (parse_range, "bytes=0-" + "9" * HUGE),
        (parse_range, "bytes=" + "," * HUGE + "0-1"),
        (parse_range, "bytes=" + "0-1," * (HUGE // 4)),
        (parse_entity_tags, '"a", ' * (HUGE // 5)),
        (parse_entity_tags, " " * HUGE + '"a'),
        (parse_http_date, "Sun, 06 Nov " + "9" * HUGE + " 08:49:37 GMT"),
        (parse_http_date, "1 " * (HUGE // 2)),
        (coding_qualities, "gzip;q=0." + "0" * HUGE + "1"),
        (coding_qualities, "gzip" + ";q=1" * (HUGE // 4)),
        (lambda name: content_disposition("attachment", name), "é\ud800\r\n" * (HUGE // 4)),
    ],
    ids=[
        "range-digits",
        "range-commas",
        "range-parts",
        "etag-list",
        "etag-spaces",
        "date-year",
        "date-words",
        "q-decimals",
        "q-params",
        "filename",
    ],
)
def test_parsers_are_total_on_huge_values(parse: Any, value: str) -> None:
    parse(value)


# --- the live routes -----------------------------------------------------------------------------

LIVE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OBJECT_KEY = "properties/object.bin"
OBJECT = bytes(range(256)) * 4  # 1 KiB, every octet value
PROPERTIES_BUCKET = "faststream-kit-properties"  # not test_s3.py's: it creates that one itself
_uploaded: set[str] = set()
_uploaded_lock = threading.Lock()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def assert_no_injection(response: httpx.Response) -> None:
    for name, value in response.headers.raw:
        assert not re.search(rb"[\r\n\x00]", name + value), (name, value)
        assert not name.lower().startswith(b"x-injected"), (name, value)


def upload(peer: S3Peer) -> None:
    """The test object, stored once per server in a bucket of this module's own."""
    with _uploaded_lock:
        if peer.endpoint_url not in _uploaded:
            client = peer.sync_client()
            client.create_bucket(Bucket=PROPERTIES_BUCKET)
            client.put_object(Bucket=PROPERTIES_BUCKET, Key=OBJECT_KEY, Body=OBJECT)
            client.close()
            _uploaded.add(peer.endpoint_url)


@pytest.fixture(scope="module")
def s3_route(s3_peer: S3Peer) -> Iterator[str]:
    """The object's URL on ``make_app``'s ``s3_stream`` route, with the request passed in."""
    upload(s3_peer)
    with LiveServer(make_app(s3_peer, "aiobotocore"), log_level="critical") as server:
        yield f"{server.url}/objects/{OBJECT_KEY}?bucket={PROPERTIES_BUCKET}"


conditional_values = st.fixed_dictionaries(
    {},
    optional={
        "range": wire_values(range_values),
        "if-range": wire_values(st.one_of(date_values, etag_values)),
        "if-match": wire_values(etag_values),
        "if-none-match": wire_values(etag_values),
        "if-modified-since": wire_values(date_values),
        "if-unmodified-since": wire_values(date_values),
    },
)


@LIVE
@given(
    headers=conditional_values,
    method=st.sampled_from(["GET", "HEAD"]),
    filename=st.none() | st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
)
def test_s3_stream_answers_any_request_headers_without_a_5xx(
    client: httpx.Client,
    s3_route: str,
    headers: dict[str, bytes],
    method: str,
    filename: str | None,
) -> None:
    url = s3_route
    if filename is not None:  # the query string carries CR, LF and NUL to content_disposition
        url += "&disposition=attachment&filename=" + quote(filename, safe="")
    response = client.request(method, url, headers=on_the_wire(headers))

    assert response.status_code in (200, 206, 304, 412, 416), (response, response.text)
    assert "Traceback" not in response.text
    assert_no_injection(response)
    body = response.content
    if response.status_code in (412, 416):
        assert response.headers["content-type"] == "application/json"
        return
    if response.status_code == 304:
        assert body == b""
        return
    if method == "HEAD":
        assert body == b""
    if response.status_code == 200:
        assert response.headers["content-length"] == str(len(OBJECT))
        assert method == "HEAD" or body == OBJECT
    else:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", response.headers["content-range"])
        assert match is not None, response.headers["content-range"]
        first, last, size = map(int, match.groups())
        assert first <= last < size == len(OBJECT)
        assert response.headers["content-length"] == str(last - first + 1)
        assert method == "HEAD" or body == OBJECT[first : last + 1]
    if filename is not None:
        # The name arrives whole, less the control characters that could end the line.
        name = re.sub(r"[\x00-\x1f\x7f-\x9f]", "", filename).strip()
        disposition = response.headers["content-disposition"]
        encoded = re.search(r"filename\*=UTF-8''([^;\s]+)$", disposition)
        if encoded is not None:
            assert unquote(encoded.group(1), errors="strict") == name
        else:
            assert disposition == (f'attachment; filename="{name}"' if name else "attachment")


@pytest.fixture(scope="module")
def upstream_routes() -> Iterator[tuple[Upstream, str]]:
    """The recording upstream and the proxy in front of it (both clients), one of each."""
    upstream = Upstream()
    with (
        LiveServer(upstream, log_level="critical") as up,
        LiveServer(proxy_app(up.url), log_level="critical") as proxy,
    ):
        yield upstream, proxy.url


forwarded_values = st.fixed_dictionaries(
    {},
    optional={
        "range": wire_values(range_values),
        "if-range": wire_values(date_values),
        "if-match": wire_values(etag_values),
        "if-none-match": wire_values(etag_values),
        "if-modified-since": wire_values(date_values),
        "accept-encoding": wire_values(accept_encoding_values),
        "last-event-id": wire_values(st.text(max_size=20)),
        "x-forwarded-for": wire_values(st.text(max_size=20)),
        "x-anything": wire_values(st.just("X-Injected: yes")),
    },
)


@LIVE
@given(headers=forwarded_values, kind=st.sampled_from(CLIENT_KINDS))
def test_upstream_stream_forwards_any_request_headers_without_a_5xx(
    client: httpx.Client,
    upstream_routes: tuple[Upstream, str],
    headers: dict[str, bytes],
    kind: str,
) -> None:
    upstream, proxy_url = upstream_routes
    request_id = f"headers-{time.monotonic_ns()}"
    response = client.get(
        f"{proxy_url}/{kind}/headers?id={request_id}", headers=on_the_wire(headers)
    )

    assert response.status_code == 200, (response, response.text)
    assert response.content == b"headers recorded"
    assert_no_injection(response)
    seen = dict(upstream.log.get(request_id).headers)
    assert not any(name.startswith("x-injected") for name in seen)
    for name, value in headers.items():
        if name == "x-forwarded-for":
            continue  # the proxy appends the client's address
        if name == "accept-encoding" and not value:
            continue  # "no coding, please" goes upstream as "identity"
        sent = value.decode("latin-1")
        if kind == "httpx" or _is_utf8(value):
            # A proxy forwards obs-text as the opaque octets it is (RFC 9110 §5.5). aiohttp
            # can only send str, which it encodes as UTF-8, so octets that are not UTF-8
            # cannot be exact there.
            assert seen.get(name) == sent, (name, seen.get(name), sent)


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@LIVE
@given(accept_encoding=wire_values(accept_encoding_values), kind=st.sampled_from(CLIENT_KINDS))
def test_upstream_gzip_reaches_only_a_client_that_validly_accepts_it(
    client: httpx.Client, upstream_routes: tuple[Upstream, str], accept_encoding: bytes, kind: str
) -> None:
    _, proxy_url = upstream_routes
    response = client.get(
        f"{proxy_url}/{kind}/always-gzip", headers={b"accept-encoding": accept_encoding}
    )
    assert response.status_code == 200
    assert_no_injection(response)
    assert response.content == PAYLOAD  # httpx decoded it if the header says gzip
    # The core labels a body it sends as is "identity" (so no middleware compresses it).
    encoding = response.headers.get("content-encoding", "identity")
    if encoding != "identity":
        assert encoding == "gzip"
        assert _grants_gzip(accept_encoding.decode("latin-1")), accept_encoding


_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


def _grants_gzip(value: str) -> bool:
    """RFC 9110 §12.5.3, read independently: gzip (or its alias x-gzip, else ``*``) listed
    with a valid q above 0; of several mentions of gzip, the last one counts."""
    grant: dict[str, bool] = {}
    for item in value.split(","):
        coding, *params = (part.strip(" \t") for part in item.split(";"))
        q = "1"
        for param in params:
            key, _, found = param.partition("=")
            if key.strip(" \t").lower() == "q":
                q = found.strip(" \t")
        name = "gzip" if coding.lower() in ("gzip", "x-gzip") else coding.lower()
        grant[name] = _QVALUE.fullmatch(q) is not None and float(q) > 0
    return grant.get("gzip", grant.get("*", False))


def sse_app() -> FastAPI:
    app = FastAPI()

    @app.get("/resume")
    async def resume() -> Response:
        async def events(last_id: str | None) -> AsyncIterator[dict[str, Any]]:
            yield {"data": {"last_event_id": last_id}, "id": "next"}

        return sse_response(events)

    return app


@pytest.fixture(scope="module")
def sse_url() -> Iterator[str]:
    with LiveServer(sse_app(), log_level="critical") as server:
        yield server.url + "/resume"


@LIVE
@given(value=wire_values(st.one_of(st.text(max_size=30), long_digits)))
def test_sse_response_hands_any_last_event_id_to_the_source(
    client: httpx.Client, sse_url: str, value: bytes
) -> None:
    response = client.get(sse_url, headers={b"last-event-id": value})
    assert response.status_code == 200, (response, response.text)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert_no_injection(response)
    events = parse_events(response.content)
    assert [(e.event, e.id) for e in events] == [("message", "next")]
    # EventSource sends the id as UTF-8; octets that are not are replaced, never an error.
    expected = value.decode("utf-8", errors="replace") or None
    assert json.loads(events[0].data) == {"last_event_id": expected}


def test_s3_stream_range_with_5000_digits_reaches_the_end_or_is_416(
    client: httpx.Client, s3_route: str
) -> None:
    """The issue's reproduction, as a plain example (it was a 500 with a traceback)."""
    response = client.get(s3_route, headers={"Range": "bytes=0-" + "9" * 5000})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 0-{len(OBJECT) - 1}/{len(OBJECT)}"
    assert response.content == OBJECT
    response = client.get(s3_route, headers={"Range": "bytes=" + "9" * 5000 + "-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(OBJECT)}"


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_upstream_gzip_is_decoded_for_an_infinite_qvalue(
    client: httpx.Client, upstream_routes: tuple[Upstream, str], kind: str
) -> None:
    _, proxy_url = upstream_routes
    response = client.get(
        f"{proxy_url}/{kind}/always-gzip", headers={"accept-encoding": "gzip;q=inf"}
    )
    assert response.status_code == 200
    assert response.headers.get("content-encoding", "identity") == "identity"
    assert response.content == PAYLOAD


@pytest.mark.parametrize("kind", CLIENT_KINDS)
def test_a_utf8_header_value_reaches_the_upstream_as_the_same_octets(
    client: httpx.Client, upstream_routes: tuple[Upstream, str], kind: str
) -> None:
    upstream, proxy_url = upstream_routes
    request_id = f"utf8-{time.monotonic_ns()}"
    octets = "café ☕".encode()
    response = client.get(
        f"{proxy_url}/{kind}/headers?id={request_id}", headers={b"x-note": octets}
    )
    assert response.status_code == 200
    assert dict(upstream.log.get(request_id).headers)["x-note"] == octets.decode("latin-1")
