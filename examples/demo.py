"""The demo app, for ``uvicorn examples.demo:app`` (or just run ``faststream-kit demo``)."""

from faststream_kit.demo import create_app

app = create_app()
