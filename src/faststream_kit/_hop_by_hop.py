"""Which header fields a proxy must not forward, in either direction.

RFC 9110 §7.6.1: ``Connection`` and every field it names are for the next hop only, and a
proxy removes them (with ``Keep-Alive``, ``Proxy-Connection``, ``TE``, ``Transfer-Encoding``
and ``Upgrade``) before forwarding. ``Trailer`` announces trailer fields that a proxy which
streams the body through does not forward, and ``Proxy-*`` fields authenticate this hop.
RFC 9113 §8.2.2 makes the connection-specific ones malformed in HTTP/2, so they must go.

The filtering lives here, in one place, for both directions: a proxy that filters in several
spots forwards the one it forgot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["HOP_BY_HOP", "accepts", "coding_qualities", "end_to_end", "without"]

Header = tuple[str, str]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",  # RFC 2616's spelling, still seen in the wild
        "transfer-encoding",
        "upgrade",
    }
)


def end_to_end(headers: Iterable[Header]) -> list[Header]:
    """``headers`` minus the hop-by-hop ones, names lowercased, order and repeats kept."""
    pairs = [(name.lower(), value) for name, value in headers]
    named = {
        token.strip().lower()
        for name, value in pairs
        if name == "connection"
        for token in value.split(",")
        if token.strip()
    }
    return [
        (name, value)
        for name, value in pairs
        if name not in HOP_BY_HOP
        and name not in named
        and not name.startswith(("proxy-", ":"))  # Proxy-* authenticate this hop
    ]


def without(headers: Iterable[Header], *names: str) -> list[Header]:
    """``headers`` (lowercase names) minus every field called one of ``names``."""
    drop = {name.lower() for name in names}
    return [(name, value) for name, value in headers if name not in drop]


# RFC 9110 §12.4.2:  qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")

# RFC 9110 §8.4.1.1 and §8.4.1.3: a recipient SHOULD treat these as compress and gzip, so a
# client that refuses x-gzip refuses gzip too.
_ALIASES = {"x-gzip": "gzip", "x-compress": "compress"}


def coding_qualities(accept_encoding: str | None) -> dict[str, float]:
    """Each content-coding an ``Accept-Encoding`` value names, with its ``q`` (RFC 9110 §12.5.3).

    Never raises. A ``q`` that is not a qvalue (``nan``, ``inf``, ``1e999``, ``-1``, ``2``,
    four decimals, digits other than ASCII ones, all of which ``float()`` would take) counts
    as ``0``: the coding is refused, so a client that garbled its preference is sent
    ``identity``, which every client can read, rather than a coding it may not decode.
    """
    qualities: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        coding = _ALIASES.get(coding, coding)
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                value = value.strip(" \t")
                quality = float(value) if _QVALUE.fullmatch(value) else 0.0
        qualities[coding] = quality
    return qualities


def accepts(qualities: dict[str, float], coding: str) -> bool:
    """Whether a client that sent ``qualities`` accepts a body in ``coding``.

    ``identity`` is acceptable unless refused; ``*`` stands for every coding not listed;
    ``q=0`` refuses; ``x-gzip`` is ``gzip``.
    """
    coding = _ALIASES.get(coding, coding)
    if coding in qualities:
        return qualities[coding] > 0
    if "*" in qualities:
        return qualities["*"] > 0
    return coding == "identity"
