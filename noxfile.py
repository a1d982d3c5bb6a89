"""Developer and CI tasks: ``nox -s tests``, ``lint``, ``typecheck``, ``bench``."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite against real peers (missing peers skip, or fail under CI=true)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """``mypy --strict src`` against every package ``src`` imports (the ``lint`` extra).

    ``nox -s typecheck -- --python-executable PATH`` reads those packages from another
    environment instead and installs only mypy here: ``.ci/run`` passes the tests session's
    Python, so CI downloads and installs the ~170 packages once, not twice.
    """
    if any(arg.startswith("--python-executable") for arg in session.posargs):
        session.install("mypy>=1.11")  # as the lint extra
    else:
        session.install("-e", ".[lint]")
    session.run("mypy", "--strict", *session.posargs, "src")


BENCHES = ("core", "sse", "llm", "s3", "upstream", "resume", "zip", "table", "otel")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Every benchmark, one after another, then the charts and ``docs/benchmarks.md``.

    ``nox -s bench`` runs each bench with ``--quick``; ``nox -s bench -- --full`` runs the full
    sizes (about 7 minutes on 2 cores). Name benches to run only those (``-- --full core sse``);
    ``-- --report-only`` redraws the page from the results already in ``bench/results/``.
    """
    options = {arg for arg in session.posargs if arg.startswith("--")}
    names = [arg for arg in session.posargs if not arg.startswith("--")] or list(BENCHES)
    unknown = sorted(options - {"--full", "--report-only"}) + sorted(set(names) - set(BENCHES))
    if unknown:
        session.error(f"unknown arguments {unknown}; use --full, --report-only or {BENCHES}")
    # pytest: bench/s3.py borrows its SeaweedFS peer from tests/s3_peers.py, which imports it.
    session.install("-e", ".[bench]", "matplotlib", "pytest")
    size = [] if "--full" in options else ["--quick"]
    if "--report-only" not in options:
        for name in names:
            run_bench(session, name, size)
    session.run("python", "bench/report.py")


def run_bench(session: nox.Session, name: str, size: list[str]) -> None:
    """One bench, leaving its results in ``bench/results/<name>.json`` for the report."""
    # One at a time: the benches measure CPU and wall time, and each wants two cores.
    if name == "resume":
        session.run("python", "bench/resume.py", *size, "--json", "bench/results/resume.json")
    else:
        session.run("python", f"bench/{name}.py", *size)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site with ``mkdocs build --strict``, then check its pages.

    A code fence the Markdown extensions did not recognise leaves its backticks on the page,
    and the rest of that page renders as one code block: no warning says so.
    """
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})
    garbled = [str(page) for page in Path("site").rglob("*.html") if "```" in page.read_text()]
    if garbled:
        session.error(f"unrendered code fences in {', '.join(sorted(garbled))}")
