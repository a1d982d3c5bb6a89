"""Where a resumable stream lives in Redis, and the ids its events carry.

Every key of one stream carries the same Redis Cluster hash tag, so the scripts and
pipelines over them work on a cluster. The tag is one of :data:`BUCKETS` buckets, not the
stream's own key: a multi-key command must stay inside one slot ("CROSSSLOT" otherwise), and
a worker follows all the streams of a bucket with one blocking ``XREAD``.
"""

from __future__ import annotations

import re
import zlib
from typing import NamedTuple

from .._errors import library_error

__all__ = ["BUCKETS", "EntryId", "StreamKeys", "format_id", "parse_id", "resume_after"]

BUCKETS = 16
"""Slots the streams are spread over: on a cluster, the buckets spread over its nodes."""

EntryId = tuple[int, int]
"""A Redis Stream entry id, ``<milliseconds>-<sequence>``, as two ints (they sort)."""

# ASCII digits only: ``\d`` would also take '١٢' (Arabic-Indic digits), which Redis refuses.
_EVENT_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})", re.ASCII)
_MAX_PART = 2**64 - 1  # each half of a stream id is an unsigned 64-bit integer


class StreamKeys(NamedTuple):
    events: bytes  # the Redis Stream
    owner: bytes  # the producer's heartbeat: exists while it runs
    cancel: bytes  # set by cancel(), read by the producer's heartbeat
    bucket: int
    activity: bytes  # the bucket's activity stream: which streams were just written


def stream_keys(prefix: str, key: str) -> StreamKeys:
    bucket = zlib.crc32(key.encode("utf-8", "surrogatepass")) % BUCKETS
    base = f"{prefix}{{b{bucket:02d}}}:{key}".encode("utf-8", "surrogatepass")
    return StreamKeys(
        base + b":events", base + b":owner", base + b":cancel", bucket, activity_key(prefix, bucket)
    )


def activity_key(prefix: str, bucket: int) -> bytes:
    """A bucket's activity stream: each write of the shared writers adds the names of the
    streams it wrote to, so a worker blocks on these few streams, not on every one it
    follows."""
    return f"{prefix}{{b{bucket:02d}}}:activity".encode()


def wake_key(prefix: str, bucket: int, token: str) -> bytes:
    """A worker's own stream in a bucket's slot: writing to it ends that worker's blocking
    ``XREAD`` early, so a stream it starts following is read at once."""
    return f"{prefix}{{b{bucket:02d}}}:wake:{token}".encode()


def parse_id(raw: bytes | str) -> EntryId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


def format_id(entry_id: EntryId) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def resume_after(last_event_id: str | None) -> EntryId:
    """Where a reader resumes: after the event whose id the client sent, or from the start.

    The id must be one this library sent (``<milliseconds>-<sequence>``); anything else is
    the client's error (400), not a reason to replay from the start or to ask Redis.
    """
    if last_event_id is None:
        return (0, 0)
    match = _EVENT_ID.fullmatch(last_event_id)
    if match is None or max(int(match[1]), int(match[2])) > _MAX_PART:
        shown = last_event_id if len(last_event_id) <= 40 else last_event_id[:40] + "..."
        raise library_error(
            "bad_request",
            f"Last-Event-ID must be an event id this stream sent, like 1718000000000-0; "
            f"got {shown!r}",
        )
    return int(match[1]), int(match[2])
