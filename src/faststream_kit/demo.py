"""The demo app: chat, S3 gallery, upstream proxy, the buffering trap and an SSE clock.

```python notest
from faststream_kit.demo import create_app

app = create_app()  # uvicorn --factory faststream_kit.demo:create_app
```

``faststream-kit demo`` serves it too. Needs the ``demo`` extra.
"""

from ._demo import DemoSettings, create_app

__all__ = ["DemoSettings", "create_app"]
