"""The HTTP fields a file server reads and writes: Range, validators, Content-Disposition.

Parsers here never raise on what a client sent. A field that does not parse is returned as
``None`` and the caller ignores it, which is what RFC 9110 asks of a server for ``Range``
(§14.2: "a server MAY ignore the Range header field"), ``If-Modified-Since`` (§13.1.3: "MUST
ignore ... if the received field value is not a valid HTTP-date") and the others.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Literal
from urllib.parse import quote

__all__ = [
    "ByteRange",
    "EntityTag",
    "content_disposition",
    "format_http_date",
    "parse_entity_tags",
    "parse_http_date",
    "parse_range",
]

_MAX_POSITION = 2**62
"""Larger positions are clamped: no object is that big, and S3 rejects absurd numbers."""

_POSITION_DIGITS = len(str(_MAX_POSITION))
"""Significant digits beyond this clamp without ``int()``, which refuses more than 4,300."""

_MAX_RANGES = 100
"""A Range with more parts than this is ignored (RFC 9110 §14.2 lets a server do so)."""

# RFC 9110 §14.1.1:  int-range = first-pos "-" [ last-pos ]   suffix-range = "-" suffix-length
_RANGE_SPEC = re.compile(r"([0-9]+)-([0-9]*)|-([0-9]+)")
# RFC 9110 §8.8.3:  entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text
_ENTITY_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


@dataclass(frozen=True)
class ByteRange:
    """One part of ``Range: bytes=...``: ``first-last``, ``first-`` or the last ``suffix`` bytes.

    Positions are inclusive, as on the wire.
    """

    first: int | None = None
    last: int | None = None
    suffix: int | None = None

    def header_value(self) -> str:
        """The range as a ``Range`` field value, rebuilt from the parsed numbers."""
        if self.suffix is not None:
            return f"bytes=-{self.suffix}"
        return f"bytes={self.first}-{'' if self.last is None else self.last}"

    def resolve(self, size: int) -> tuple[int, int] | None:
        """The inclusive ``(start, end)`` this range selects of ``size`` bytes, or ``None``.

        RFC 9110 §14.1.2: a range is satisfiable if its first position is below the length,
        or if it is a suffix range with a non-zero length; ``last`` past the end is clamped.
        """
        if self.suffix is not None:
            if self.suffix == 0 or size == 0:
                return None
            return max(0, size - self.suffix), size - 1
        assert self.first is not None
        if self.first >= size:
            return None
        last = size - 1 if self.last is None else min(self.last, size - 1)
        return self.first, last


def parse_range(value: str | None) -> list[ByteRange] | None:
    """Parse a ``Range`` field value; ``None`` if it is absent, invalid or not in bytes.

    An int-range whose last position is below its first makes the whole field invalid
    (RFC 9110 §14.1.1), and so does any unparsable part: the caller then sends the full
    representation, as §14.2 allows.
    """
    if not value:
        return None
    unit, sep, range_set = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":  # range units are case-insensitive (§14.1)
        return None
    # "1#range-spec": list elements are separated by commas with optional whitespace, and
    # empty elements must be accepted (RFC 9110 §5.6.1.2).
    specs = [spec.strip() for spec in range_set.split(",")]
    specs = [spec for spec in specs if spec]
    if not specs or len(specs) > _MAX_RANGES:
        return None
    ranges = []
    for spec in specs:
        match = _RANGE_SPEC.fullmatch(spec)
        if match is None:
            return None
        first, last, suffix = match.groups()
        if suffix is not None:
            ranges.append(ByteRange(suffix=_position(suffix)))
            continue
        start = _position(first)
        end = _position(last) if last else None
        if end is not None and end < start:
            return None
        ranges.append(ByteRange(first=start, last=end))
    return ranges


def _position(digits: str) -> int:
    """A byte position or suffix length, at most ``_MAX_POSITION``, from any number of digits.

    Clamping keeps the meaning RFC 9110 §14.1.2 gives a number past the end of every
    representation: a first position there is unsatisfiable (416), a last position means
    "to the end", and a suffix length means "all of it". ``int()`` would raise instead on
    more than 4,300 digits, so the length decides first; leading zeros count for nothing.
    """
    significant = digits.lstrip("0")
    if len(significant) > _POSITION_DIGITS:
        return _MAX_POSITION
    return min(int(significant or "0"), _MAX_POSITION)


@dataclass(frozen=True)
class EntityTag:
    """An entity tag: ``opaque`` includes its double quotes, as in ``"abc"``."""

    opaque: str
    weak: bool = False

    @classmethod
    def parse(cls, value: str | None) -> EntityTag | None:
        tags = parse_entity_tags(value)
        if tags is None or tags == "*" or len(tags) != 1:
            return None
        return tags[0]

    def strong_match(self, other: EntityTag | None) -> bool:
        """RFC 9110 §8.8.3.2: both strong and identical (used by If-Match and If-Range)."""
        return other is not None and not self.weak and not other.weak and self == other

    def weak_match(self, other: EntityTag | None) -> bool:
        """RFC 9110 §8.8.3.2: identical opaque tags, weak or not (used by If-None-Match)."""
        return other is not None and self.opaque == other.opaque


def parse_entity_tags(value: str | None) -> Literal["*"] | list[EntityTag] | None:
    """Parse an ``If-Match``/``If-None-Match`` value: ``"*"``, a list of tags, or ``None``."""
    if value is None:
        return None
    if value.strip() == "*":
        return "*"
    tags: list[EntityTag] = []
    position = 0
    while position < len(value):
        if value[position] in " \t,":  # empty list elements are allowed (RFC 9110 §5.6.1.2)
            position += 1
            continue
        match = _ENTITY_TAG.match(value, position)
        if match is None:
            return None
        tags.append(EntityTag(match.group(2), weak=match.group(1) is not None))
        position = match.end()
    return tags or None


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP-date (RFC 9110 §5.6.7, all three historic forms) as a datetime in UTC.

    HTTP-dates are GMT, but the email parser also takes numeric zones; the moment is
    normalised to UTC, so that it compares with ``Last-Modified`` and goes back out as an
    HTTP-date. A date that UTC cannot hold (31 Dec 9999 at ``-2359``) is no date at all.
    """
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
        if parsed.tzinfo is None:  # "-0000" or no zone: RFC 5322 §3.3 "no information"
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def format_http_date(moment: datetime) -> str:
    """``Sun, 06 Nov 1994 08:49:37 GMT`` (IMF-fixdate, RFC 9110 §5.6.7)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment.astimezone(UTC), usegmt=True)


# RFC 8187 §3.2.1: attr-char = ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." /
# "^" / "_" / "`" / "|" / "~"; everything else is percent-encoded UTF-8.
_ATTR_CHAR_EXTRAS = "!#$&+-.^_`|~"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# What may stand in the quoted ``filename="..."`` as it is. Anything else (quotes,
# backslashes, and ``;``, ``=``, ``*``, ``'``, ``%`` that a naive parser could take for
# parameter syntax) makes the name go in ``filename*`` with an approximation in ``filename``.
_PLAIN_NAME_CHAR = re.compile(r"[A-Za-z0-9 !#$&+,.\-^_`|~()\[\]@{}]")


def content_disposition(disposition: str, filename: str | None) -> str:
    """A ``Content-Disposition`` value per RFC 6266, safe for any ``filename``.

    A plain ASCII name goes in ``filename="..."``; a name with anything else (non-ASCII,
    quotes, backslashes, parameter syntax) also gets ``filename*=UTF-8''...`` (RFC 8187),
    which browsers prefer, with an ASCII approximation in ``filename`` for the rest. Control
    characters are dropped, so no name can end the header line or start another one.
    """
    if disposition not in ("inline", "attachment"):
        raise ValueError(f"disposition must be 'inline' or 'attachment', got {disposition!r}")
    if filename is None:
        return disposition
    # A str may hold lone surrogates (from ``surrogateescape``, or JSON's "\ud800"), which
    # UTF-8 cannot carry: each becomes U+FFFD, and a pair stored as two code points becomes
    # the character it stands for.
    name = filename.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    name = _CONTROL.sub("", name).strip()
    if not name:
        return disposition
    if all(_PLAIN_NAME_CHAR.fullmatch(char) for char in name):
        return f'{disposition}; filename="{name}"'
    fallback = _ascii_fallback(name)
    encoded = quote(name, safe=_ATTR_CHAR_EXTRAS, encoding="utf-8")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _ascii_fallback(name: str) -> str:
    """``Café "menu".pdf`` → ``Cafe _menu_.pdf``: what an RFC 6266 reader without
    ``filename*`` support will use."""
    decomposed = unicodedata.normalize("NFKD", name)
    chars = []
    for char in decomposed:
        if unicodedata.combining(char):
            continue
        chars.append(char if _PLAIN_NAME_CHAR.fullmatch(char) else "_")
    return "".join(chars)
