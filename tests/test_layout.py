"""One place per fact: the layout rules of ``DESIGN.md`` that a refactor could quietly break.

One SSE encoder, one keepalive constant per format, one hop-by-hop list, helpers that share
only the core and the format modules, and no import cycles.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from faststream_kit import stream_response
from faststream_kit._hop_by_hop import HOP_BY_HOP
from faststream_kit.testing import LiveServer

SOURCE = Path(__file__).resolve().parents[1] / "src" / "faststream_kit"
PACKAGE = "faststream_kit"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for path in sorted(SOURCE.rglob("*.py")):
        yield module_name(path), path, ast.parse(path.read_text())


def imports_of(name: str, path: Path, tree: ast.Module) -> set[str]:
    """Our modules that ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith(PACKAGE):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(PACKAGE))
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {name: (path, tree) for name, path, tree in modules()}
    return {
        name: {target for target in imports_of(name, path, tree) if target in graph} - {name}
        for name, (path, tree) in graph.items()
    }


def test_no_module_imports_itself_back_through_another() -> None:
    graph = import_graph()
    # A package's __init__ re-exports its modules; importing the package from inside it
    # is the same module graph, so edges into a package's own __init__ do not count.
    edges = {
        name: {t for t in targets if not name.startswith(t + ".")}
        for name, targets in graph.items()
    }
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def string_literals(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Every str/bytes constant that is not a docstring, as text."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            value = node.value
            if isinstance(value, bytes):
                yield node.lineno, value.decode("latin-1")
            elif isinstance(value, str):
                yield node.lineno, value


def test_sse_lines_are_written_only_by_the_sse_module() -> None:
    field = re.compile(r"(^|\n)(data|event|id|retry): ?")
    writers = [
        f"{path.name}:{line}: {text!r}"
        for name, path, tree in modules()
        if not name.endswith(("._sse", ".testing._sse_parser"))
        for line, text in string_literals(tree)
        if field.search(text)
    ]
    assert writers == []


def test_each_keepalive_is_declared_once() -> None:
    declared = [
        f"{path.name}:{number}"
        for _, path, _ in modules()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if ': ping\\n\\n"' in line
    ]
    assert declared == ["_sse.py:" + declared[0].split(":")[1]]


def test_hop_by_hop_fields_set_on_a_stream_never_reach_the_client() -> None:
    sent = {name: "x" for name in sorted(HOP_BY_HOP) if name != "transfer-encoding"}
    sent["te"], sent["trailer"] = "trailers", "x-checksum"

    async def route(request: Request) -> object:
        return stream_response(iter(["ok"]), headers=sent)

    with LiveServer(Starlette(routes=[Route("/", route)])) as server:
        response = httpx.get(server.url + "/")
    assert response.text == "ok"
    assert {"te", "trailer", "keep-alive", "upgrade", "proxy-connection"} <= set(sent)
    for name in sent:
        assert name not in response.headers, name


def test_every_llm_provider_and_format_module_is_registered() -> None:
    """Adding a provider or a format touches one module and one registry line, and a module
    that exists is never left out of its registry (its sources would be a TypeError)."""
    from faststream_kit._llm._formats import FORMATS
    from faststream_kit._llm._providers import PROVIDERS

    providers = SOURCE / "_llm" / "_providers"
    modules = {path.stem for path in providers.glob("*.py") if not path.stem.startswith("_")}
    assert {provider.__name__.rsplit(".", 1)[1] for provider in PROVIDERS} == modules
    for provider in PROVIDERS:
        assert callable(provider.for_stream), provider
        assert callable(provider.for_item), provider
        assert isinstance(provider.ITEMS, str), provider

    formats = SOURCE / "_llm" / "_formats"
    modules = {path.stem for path in formats.glob("*.py") if not path.stem.startswith("_")}
    assert {spec.make_encoder.__module__.rsplit(".", 1)[1] for spec in FORMATS.values()} == (
        modules
    )
