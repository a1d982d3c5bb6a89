"""What the caller gives (:class:`ZipMember`, :class:`S3Object`) and the checks of members and
their names, shared by both ways of building the archive."""

from __future__ import annotations

from collections.abc import (
    AsyncIterable,
    Iterable,
    Mapping,
)
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .._errors import library_error
from .._validate import (
    check_bool,
    check_client,
    check_mapping,
    non_empty_str,
    stream_source,
)
from ._stored import _WRITE_BYTES

_MIN_MODIFIED = datetime(1980, 1, 1, tzinfo=UTC)
_MAX_MODIFIED = datetime(2107, 12, 31, 23, 59, 58, tzinfo=UTC)
"""The range an MS-DOS date in a ZIP header can hold (APPNOTE 4.4.6)."""


_MAX_NAME_BYTES = 0xFFFF  # the name length is a 16-bit field (APPNOTE 4.4.10)


DEFAULT_COMPRESS_LEVEL = 6
"""zlib's own default: most of level 9's ratio at a fraction of its time."""


# ---------------------------------------------------------------------------------------------
# What the caller gives


@dataclass(frozen=True)
class S3Object:
    """An S3 object to put in an archive, read like :func:`s3_stream` reads one.

    ``client`` is an aiobotocore or boto3/botocore S3 client; ``extra_args`` go to
    ``GetObject`` as they are (``VersionId``, ``SSECustomerKey``, ...). Nothing is fetched
    until the archive reaches this member; its ``LastModified`` becomes the member's date.
    """

    client: Any
    bucket: str
    key: str
    extra_args: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        non_empty_str("bucket", self.bucket)
        non_empty_str("key", self.key)
        check_mapping("extra_args", self.extra_args)
        if self.extra_args and not self.extra_args.keys().isdisjoint(("Bucket", "Key")):
            raise ValueError("extra_args must not set Bucket or Key: pass them as bucket and key")
        check_client("client", self.client, ("get_object",), _CLIENT)  # last: touches it


_CLIENT = "an aiobotocore or boto3/botocore S3 client"

ZipBody = bytes | Iterable[bytes] | AsyncIterable[bytes] | S3Object
"""A member's bytes: ``bytes``, a sync or async iterable of ``bytes``, or an :class:`S3Object`."""


@dataclass(frozen=True)
class ZipMember:
    """One file of a :func:`zip_stream` archive.

    ``name`` is the path inside the archive (``"photos/2024/cat.jpg"``), checked by
    :func:`zip_stream`. ``modified`` is the date shown when it is extracted: by default the
    S3 object's ``LastModified``, else the time the archive started; a naive datetime is
    taken as UTC. ``compress=False`` spends no time compressing (for JPEG, video, archives).
    """

    name: str
    body: ZipBody
    modified: datetime | None = None
    compress: bool = True

    def __post_init__(self) -> None:
        _check_member_fields("", self.name, self.body, self.modified)
        check_bool("compress", self.compress)


ZipMembers = (
    Iterable[ZipMember | tuple[str, ZipBody]] | AsyncIterable[ZipMember | tuple[str, ZipBody]]
)
"""What :func:`zip_stream` takes: :class:`ZipMember` values or ``(name, body)`` tuples."""


def _check_member_fields(where: str, name: Any, body: Any, modified: Any) -> None:
    """The types of a member's fields; ``where`` prefixes the field names in the messages."""
    if not isinstance(name, str):
        raise TypeError(f"{where}name must be a str, got {type(name).__name__}")
    if isinstance(body, str):
        raise TypeError(f"{where}body must be bytes, not str: encode the text (text.encode())")
    if not isinstance(body, bytes | bytearray | memoryview | S3Object):
        stream_source(
            f"{where}body",
            body,
            what="bytes, a sync or async iterable of bytes, or an S3Object",
        )
    if modified is not None:
        if not isinstance(modified, datetime):
            raise TypeError(f"{where}modified must be a datetime or None, got {type(modified)}")
        if not _MIN_MODIFIED <= _as_utc(modified) <= _MAX_MODIFIED:
            raise ValueError(
                f"{where}modified must lie between 1980 and 2107 (the ZIP date range), "
                f"got {modified.isoformat()}"
            )


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# Member names


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a member's path, or ``None``.

    An extracting tool joins the name to its target directory, so a name must stay inside
    it: no absolute path (``/etc/passwd``, ``C:/x``), no ``..`` segment. APPNOTE 4.4.17
    also asks for forward slashes only, where Windows tools treat ``\\`` as a separator,
    so a backslash could hide a ``..``. The name is written as UTF-8 with the UTF-8 flag
    (APPNOTE appendix D); a ``str`` with lone surrogates (undecodable bytes kept by
    ``surrogateescape``) has no UTF-8 form.
    """
    if not name:
        return "is empty"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (it holds a lone surrogate)"
    if len(encoded) > _MAX_NAME_BYTES:
        return f"is longer than {_MAX_NAME_BYTES} bytes in UTF-8"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        return "contains a control character"
    if "\\" in name:
        return "contains a backslash (ZIP paths use '/')"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        return "is an absolute path"
    segments = name.split("/")
    if ".." in segments:
        return "contains a '..' segment"
    if "." in segments or "" in segments:
        return "contains an empty or '.' segment (or ends with '/')"
    return None


def _problem_in_archive(name: str, seen: set[str]) -> str | None:
    """:func:`name_problem`, or a name already used: extracting would overwrite a file."""
    return name_problem(name) or ("is a duplicate" if name in seen else None)


def _name_error(where: str, name: str, problem: str, *, untrusted: bool) -> Exception:
    if untrusted:
        return library_error("bad_request", f"The archive member name {name!r} {problem}.")
    return ValueError(f"{where}name {name!r} {problem}")


def _check_listed_members(
    members: list[Any] | tuple[Any, ...], *, untrusted: bool
) -> Exception | None:
    """Check a list's members now; raise for the caller's mistakes, return a request's."""
    seen: set[str] = set()
    for index, item in enumerate(members):
        where = f"members[{index}] "
        name = _as_member(item, where).name
        problem = _problem_in_archive(name, seen)
        if problem is not None:
            error = _name_error(where, name, problem, untrusted=untrusted)
            if not untrusted:
                raise error
            return error
        seen.add(name)
    return None


def _as_member(item: Any, where: str) -> ZipMember:
    if isinstance(item, ZipMember):
        return item
    if not (isinstance(item, tuple) and len(item) == 2):
        raise TypeError(
            f"{where.strip()} must be a ZipMember or a (name, body) tuple, "
            f"got {type(item).__name__}"
        )
    name, body = item
    _check_member_fields(where, name, body, None)
    return ZipMember(name, body)


@dataclass(frozen=True)
class _Options:
    compress_level: int
    untrusted_names: bool
    chunk_bytes: int

    @property
    def write_bytes(self) -> int:
        """The size of the archive's pieces (see ``_WRITE_BYTES``)."""
        return min(self.chunk_bytes, _WRITE_BYTES)


def _next_member(index: int, item: Any, seen: set[str], options: _Options) -> ZipMember:
    """The ``index``-th item as a member, its name checked."""
    where = f"members[{index}] "
    member = _as_member(item, where)
    problem = _problem_in_archive(member.name, seen)
    if problem is not None:
        raise _name_error(where, member.name, problem, untrusted=options.untrusted_names)
    seen.add(member.name)
    return member
