"""One name and one default per idea, and the one path for an old name.

Every helper takes the same parameter, with the same default, for the same idea
(``docs/design.md``, "One name per idea"; ``tests/test_signatures.py`` holds the code to
it). A renamed parameter keeps working for one release through :func:`old_name`: the
helper takes it in ``**deprecated`` (a ``TypedDict`` of the old names, so type checkers
still know them), and the call warns with a ``DeprecationWarning`` naming the new one.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Final, TypedDict

from ._validate import optional_non_negative_seconds, optional_positive_seconds

__all__ = [
    "KEEPALIVE",
    "LLM_IDLE_TIMEOUT",
    "NOT_GIVEN",
    "SEND_TIMEOUT",
    "FormatKeepalive",
    "OldKeepalive",
    "keepalive_argument",
    "old_name",
]


class FormatKeepalive(float):
    """Keepalive seconds that apply only where the format has keepalive bytes.

    The default ``keepalive`` is one: an SSE or NDJSON stream pings, a plain-text or bytes
    stream, which has no byte a reader would ignore, stays silent. A plain ``float`` given
    by the caller is a request for keepalives, which such a format cannot honour (a
    ``ValueError``, unless the caller also gives the bytes).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return float.__repr__(self)  # signatures and docs show ``keepalive=15.0``


KEEPALIVE: Final = FormatKeepalive(15.0)
"""Idle seconds before a keepalive: under the 60 s idle limit of nginx, ALBs and CDNs."""

SEND_TIMEOUT: Final = 30.0
"""Seconds a client may take to read one write before the connection is aborted."""

LLM_IDLE_TIMEOUT: Final = 60.0
"""The one deliberate exception to ``idle_timeout=None``: a model that stops sending is a
failure, while a quiet event source is normal."""

NOT_GIVEN: Final = object()
"""What :func:`old_name` returns when the old name was not used."""


def old_name(
    function: str,
    deprecated: Mapping[str, object],
    old: str,
    new: str,
    *,
    new_given: bool,
    stacklevel: int = 3,
) -> object:
    """The value the caller passed under the deprecated name ``old`` of ``new``, or
    :data:`NOT_GIVEN`.

    Warns once per call site (``DeprecationWarning``, pointing at the caller's line). Any
    other name in ``deprecated`` is a misspelt argument: a ``TypeError``, as Python raises
    for one. Both names at once is a ``TypeError`` too: which one is meant is not clear.
    """
    for name in deprecated:
        if name != old:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}")
    if old not in deprecated:
        return NOT_GIVEN
    if new_given:
        raise TypeError(f"{old} is the deprecated name of {new}: pass {new} only")
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=stacklevel)
    return deprecated[old]


class OldKeepalive(TypedDict, total=False):
    """The old name of ``keepalive``, accepted for one release with a warning."""

    ping: float | None


def keepalive_argument(
    function: str, keepalive: float | None, deprecated: Mapping[str, object]
) -> float | None:
    """``keepalive``, or the deprecated ``ping``, checked under the name the caller used.

    ``ping`` keeps its old meaning: ``0`` or ``None`` turns keepalives off, and a format
    without keepalive bytes ignores it (it becomes a :class:`FormatKeepalive`).
    """
    ping = old_name(
        function,
        deprecated,
        "ping",
        "keepalive",
        new_given=keepalive is not KEEPALIVE,
        stacklevel=4,
    )
    if ping is NOT_GIVEN:
        return optional_positive_seconds("keepalive", keepalive)
    old_seconds: Any = ping
    seconds = optional_non_negative_seconds("ping", old_seconds)
    return FormatKeepalive(seconds) if seconds else None
