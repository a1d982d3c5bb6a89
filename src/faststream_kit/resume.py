"""Resumable streams on Redis: an answer produced once, readable from any worker, resumable.

```python
from faststream_kit.resume import ResumableStreams
```

See :class:`ResumableStreams`. Needs the ``redis`` extra (redis-py's asyncio client).
"""

from ._resume import ResumableStreams

__all__ = ["ResumableStreams"]
