"""mkdocs hooks: render the docs' ``python notest``, ``continuation`` and ``fixture:`` fences.

Those words tell pytest-markdown-docs to skip a block, to run it after the one before it, or to
request a pytest fixture first (a peer the example needs: see ``conftest.py``).
pymdownx.superfences does not know them and would not see a fence at all, leaving the rest of
the page garbled, so they are dropped from the page before it is rendered.
"""

from __future__ import annotations

import re
from typing import Any

TEST_RUNNER_FENCE = re.compile(
    r"^(\s*`{3,}\s*python)(?:\s+(?:notest|continuation|fixture:\w+))+\s*$", re.M
)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return TEST_RUNNER_FENCE.sub(r"\1", markdown)
