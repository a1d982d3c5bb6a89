"""The demo app served by ``faststream-kit demo`` (needs the ``demo`` extra)."""

from ._app import create_app
from ._settings import DemoSettings

__all__ = ["DemoSettings", "create_app"]
