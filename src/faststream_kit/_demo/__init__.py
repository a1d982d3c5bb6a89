"""The demo app served by ``faststream-kit demo`` (needs the ``demo`` extra: uvicorn)."""

from ._app import create_app

__all__ = ["create_app"]
