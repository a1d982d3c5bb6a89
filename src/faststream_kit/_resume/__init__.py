"""Resumable streams on Redis (see :class:`ResumableStreams`), one module per concern:
``_keys`` (where a stream lives, its ids), ``_records`` (what an entry holds), ``_writer``
(the producers' batched writes), ``_follow`` (the readers' shared reads), ``_streams`` (the
public class)."""

from ._streams import ResumableStreams

__all__ = ["ResumableStreams"]
