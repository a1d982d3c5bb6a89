"""The node scripts in ``tests/ui_schema/`` that check our output with the front ends' own code.

Each prints one JSON report ``{ok, errors, ...}`` and exits 0 when ``ok``, 1 when not; any other
exit is the script itself failing. Install their packages with ``npm ci --prefix tests/ui_schema``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["UI_SCHEMA_DIR", "run_script"]

UI_SCHEMA_DIR = Path(__file__).parent / "ui_schema"


def run_script(node: str, script: str, *args: str, body: str | None = None) -> dict[str, Any]:
    """Run ``tests/ui_schema/<script>`` with ``args`` (and ``body`` on stdin); its report."""
    result = subprocess.run(
        [node, str(UI_SCHEMA_DIR / script), *args],
        input=body,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert (result.returncode == 0) == report["ok"]
    return report
