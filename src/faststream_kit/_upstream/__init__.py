"""Proxying another service's response: :func:`upstream_stream` and its client adapters."""

from ._proxy import HeaderFilter, upstream_stream

__all__ = ["HeaderFilter", "upstream_stream"]
