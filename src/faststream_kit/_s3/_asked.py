"""What the client asked for: the request's range, ``If-Range`` and preconditions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .._http_fields import (
    ByteRange,
    EntityTag,
    parse_entity_tags,
    parse_http_date,
    parse_range,
)


@dataclass(frozen=True)
class _Conditions:
    """The request's preconditions (RFC 9110 §13.1), and who evaluates each of them.

    A single entity tag goes to S3 as ``IfMatch``/``IfNoneMatch``, and the dates as
    ``IfModifiedSince``/``IfUnmodifiedSince`` (only when the matching tag field is absent,
    §13.2.2), so S3 answers 304 or 412 without sending a byte. What S3's API cannot say (tag
    lists, ``*``, a weak tag in ``If-Match``) is checked here against the object's ``ETag``.
    """

    if_match: Literal["*"] | list[EntityTag] | None = None
    if_none_match: Literal["*"] | list[EntityTag] | None = None
    if_modified_since: datetime | None = None
    if_unmodified_since: datetime | None = None

    def _s3_if_match(self) -> EntityTag | None:
        tags = self.if_match
        if isinstance(tags, list) and len(tags) == 1 and not tags[0].weak:
            return tags[0]
        return None

    def _s3_if_none_match(self) -> EntityTag | None:
        tags = self.if_none_match
        return tags[0] if isinstance(tags, list) and len(tags) == 1 else None

    def s3_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if (tag := self._s3_if_match()) is not None:
            params["IfMatch"] = tag.opaque
        if (tag := self._s3_if_none_match()) is not None:
            params["IfNoneMatch"] = tag.opaque  # weak comparison: the opaque tag alone
        if self.if_none_match is None and self.if_modified_since is not None:
            params["IfModifiedSince"] = self.if_modified_since
        if self.if_match is None and self.if_unmodified_since is not None:
            params["IfUnmodifiedSince"] = self.if_unmodified_since
        return params

    def check_locally(self, etag: str | None) -> Literal[304, 412] | None:
        """The status for the conditions S3 did not evaluate, given the object's ETag."""
        current = EntityTag.parse(etag)
        if_match, if_none_match = self.if_match, self.if_none_match
        if (
            isinstance(if_match, list)
            and self._s3_if_match() is None
            and not any(tag.strong_match(current) for tag in if_match)
        ):
            return 412
        if if_none_match == "*":
            return 304  # GET/HEAD of an existing object
        if (
            isinstance(if_none_match, list)
            and self._s3_if_none_match() is None
            and any(tag.weak_match(current) for tag in if_none_match)
        ):
            return 304
        return None


@dataclass(frozen=True)
class _Asked:
    head: bool = False
    ranges: list[ByteRange] | None = None
    if_range: str | None = None
    conditions: _Conditions = field(default_factory=_Conditions)

    @classmethod
    def from_request(cls, request: Any) -> _Asked:
        if request is None:
            return cls()
        get = request.headers.get
        return cls(
            head=request.method == "HEAD",
            ranges=parse_range(get("range")),
            if_range=get("if-range"),
            conditions=_Conditions(
                if_match=parse_entity_tags(get("if-match")),
                if_none_match=parse_entity_tags(get("if-none-match")),
                if_modified_since=parse_http_date(get("if-modified-since")),
                if_unmodified_since=parse_http_date(get("if-unmodified-since")),
            ),
        )

    @property
    def single_range(self) -> ByteRange | None:
        """The range to serve; several ranges are answered with the whole object."""
        return self.ranges[0] if self.ranges is not None and len(self.ranges) == 1 else None

    def range_still_applies(self, found: Mapping[str, Any]) -> bool:
        """RFC 9110 §13.1.5 If-Range: serve the range only if the validator is current.

        An entity tag must match strongly, a date must equal ``Last-Modified`` exactly;
        anything else, including a value that does not parse, means "send it all".
        """
        if self.if_range is None:
            return True
        tag = EntityTag.parse(self.if_range)
        if tag is not None:
            return tag.strong_match(EntityTag.parse(found.get("ETag")))
        date = parse_http_date(self.if_range)
        modified = found.get("LastModified")
        return date is not None and isinstance(modified, datetime) and date == modified
