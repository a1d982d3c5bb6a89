"""``document_streams(app)``: the item schema of our stream classes in FastAPI's OpenAPI.

FastAPI describes the items of a ``yield`` path operation (``itemSchema``, OpenAPI 3.2) only
for its own two stream formats. For any other ``response_class`` it writes the class's
``media_type`` with ``{"schema": {"type": "string"}}``, and nothing in FastAPI asks a response
class for more: the decision is made in ``fastapi.openapi.utils`` from route attributes that
FastAPI itself sets for its own classes only. So no class can document itself; an app opts in
with one call, which wraps ``app.openapi()`` (the extension point FastAPI documents in "Extending
OpenAPI") and, after FastAPI has built the document, replaces that placeholder on every route
answered by an :class:`EventSourceResponse` or :class:`NDJSONResponse` with what FastAPI writes
for its own classes: the item type's schema from the return annotation (as ``itemSchema``;
for SSE inside the event schema, as ``data``'s ``contentSchema``), its models added to
``components/schemas``.

pydantic generates the schemas exactly as FastAPI has it do (its ``GenerateJsonSchema``, the
``#/components/schemas/`` references, the titles, the ``\\f`` cut of descriptions); only the
names of models are chosen here: a model FastAPI already lists under the same name and schema
is shared, a different one of the same name gets ``-Output`` (pydantic's own suffix for a
model whose output schema differs).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from typing import Any, get_args

from ._response_classes import EventSourceResponse, NDJSONResponse
from ._route_items import declared_item_type, is_generator_function

__all__ = ["document_streams"]

REF_PREFIX = "#/components/schemas/"

SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
"""One event of a ``text/event-stream`` as OpenAPI 3.2 describes it (section 4.14.4, "Special
Considerations for Server-Sent Events"): the fields a client's parser dispatches."""

_PLACEHOLDER = {"schema": {"type": "string"}}
"""What FastAPI writes for a response class it knows nothing about."""

_WRAPPED = "__faststream_kit_document_streams__"


def document_streams(app: Any) -> None:
    """Describe the items of ``app``'s stream routes in its OpenAPI document.

    Call it once, anywhere before the document is served (routes added later are included):

    ```python
    app = FastAPI()
    document_streams(app)
    ```

    Every ``yield`` path operation with ``response_class=EventSourceResponse`` or
    ``NDJSONResponse`` (or one of their ``with_options()`` classes) then shows the item schema of
    its return annotation, as FastAPI shows it for its own classes. Without it, FastAPI
    shows the media type with a plain string schema.
    """
    openapi = getattr(app, "openapi", None)
    if not callable(openapi) or not hasattr(app, "routes"):
        raise TypeError(f"app must be a FastAPI application, got {type(app).__name__}")
    if getattr(openapi, _WRAPPED, False):
        return

    described: list[dict[str, Any]] = []

    def openapi_with_streams() -> dict[str, Any]:
        document: dict[str, Any] = openapi()
        # FastAPI caches the document and hands the same dict back until the routes
        # change: describe each document once.
        if not described or described[0] is not document:
            _describe_streams(app, document)
            described[:] = [document]
        return document

    setattr(openapi_with_streams, _WRAPPED, True)
    app.openapi = openapi_with_streams


def _describe_streams(app: Any, document: dict[str, Any]) -> None:
    from pydantic import TypeAdapter
    from pydantic.json_schema import GenerateJsonSchema

    separate = getattr(app, "separate_input_output_schemas", True)
    found: list[tuple[dict[str, Any], type[Any], Any, str]] = []
    for route in _api_routes(app):
        response_class = route.response_class
        if not (isinstance(response_class, type) and route.include_in_schema):
            continue  # a DefaultPlaceholder: FastAPI streamed it as its own JSON Lines
        if not issubclass(response_class, EventSourceResponse | NDJSONResponse):
            continue
        item_type = declared_item_type(route.endpoint)
        if item_type is None and not is_generator_function(route.endpoint):
            continue
        for content in _placeholders(document, route, response_class):
            found.append((content, response_class, item_type, route.unique_id))
    if not found:
        return

    typed = [(index, entry[2]) for index, entry in enumerate(found) if entry[2] is not None]
    generator = GenerateJsonSchema(ref_template=REF_PREFIX + "{model}")
    schemas, definitions = generator.generate_definitions(
        inputs=[
            (index, _schema_mode(item_type, separate), TypeAdapter(item_type).core_schema)
            for index, item_type in typed
        ]
    )
    components = document.setdefault("components", {}).setdefault("schemas", {})
    renames = _merge_definitions(components, _without_none(dict(definitions)))
    document["components"]["schemas"] = {name: components[name] for name in sorted(components)}

    for index, (content, response_class, item_type, unique_id) in enumerate(found):
        item_schema: dict[str, Any] = {}
        if item_type is not None:
            schema = schemas[(index, _schema_mode(item_type, separate))]
            item_schema = _renamed(_without_none(schema), renames)
            if "$ref" not in item_schema:
                # FastAPI titles an inline item schema after its hidden field's name.
                item_schema["title"] = f"StreamItem_{unique_id}".title().replace("_", " ")
        content.clear()
        if issubclass(response_class, EventSourceResponse):
            event_schema = copy.deepcopy(SSE_EVENT_SCHEMA)
            if item_type is not None:
                event_schema["required"] = ["data"]
                event_schema["properties"]["data"] = {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": item_schema,
                }
            content["itemSchema"] = event_schema
        else:
            content["itemSchema"] = item_schema


def _api_routes(app: Any) -> Iterator[Any]:
    """Every path operation of ``app``, as FastAPI's OpenAPI sees it (with router prefixes)."""
    from fastapi import routing

    # FastAPI 0.16x keeps included routers as routes of their own and walks them with
    # iter_route_contexts(); before, include_router() copied every route into app.routes.
    walk: Callable[[Any], Iterator[Any]] | None = getattr(routing, "iter_route_contexts", None)
    if walk is None:
        yield from (route for route in app.routes if isinstance(route, routing.APIRoute))
        return
    for context in walk(app.routes):
        if isinstance(context.original_route, routing.APIRoute):
            yield context


def _placeholders(
    document: dict[str, Any], route: Any, response_class: type[Any]
) -> Iterator[dict[str, Any]]:
    """The content entries FastAPI wrote for ``route``'s stream, still holding its placeholder."""
    status = _status_code(route, response_class)
    operations = document.get("paths", {}).get(route.path_format, {})
    for method in sorted(route.methods or ()):
        operation = operations.get(method.lower(), {})
        content = operation.get("responses", {}).get(status, {}).get("content", {})
        entry = content.get(response_class.media_type)
        if entry == _PLACEHOLDER:  # anything else is the route's own `responses=`: kept
            yield entry


def _status_code(route: Any, response_class: type[Any]) -> str:
    # FastAPI's rule: the route's status_code, else the class constructor's default.
    if route.status_code is not None:
        return str(route.status_code)
    parameter = inspect.signature(response_class.__init__).parameters.get("status_code")
    if parameter is not None and isinstance(parameter.default, int):
        return str(parameter.default)
    return "200"


def _schema_mode(item_type: Any, separate_input_output: bool) -> Any:
    # FastAPI: the output (serialization) schema, unless the app merged input and output
    # schemas, where it uses the input one for types without computed fields.
    if separate_input_output or _has_computed_fields(item_type, set()):
        return "serialization"
    return "validation"


def _has_computed_fields(annotation: Any, seen: set[Any]) -> bool:
    computed = getattr(annotation, "model_computed_fields", None)
    if isinstance(annotation, type) and isinstance(computed, dict):  # a pydantic model
        if annotation in seen:
            return False
        seen.add(annotation)
        return bool(computed) or any(
            _has_computed_fields(field.annotation, seen)
            for field in annotation.model_fields.values()  # type: ignore[attr-defined]
        )
    return any(_has_computed_fields(argument, seen) for argument in get_args(annotation))


def _merge_definitions(components: dict[str, Any], definitions: dict[str, Any]) -> dict[str, str]:
    """Add our model schemas to ``components``; return the names that had to change."""
    for schema in definitions.values():
        description = schema.get("description")
        if isinstance(description, str):
            schema["description"] = description.split("\f")[0]  # as FastAPI cuts docstrings
    renames: dict[str, str] = {}
    # A model's schema refers to others by name: decide until no choice changes another.
    for _ in range(len(definitions) + 1):
        changed = False
        for name, schema in definitions.items():
            target = _name_for(name, _renamed(schema, renames), components)
            if renames.get(name, name) != target:
                renames[name] = target
                changed = True
        if not changed:
            break
    for name, schema in definitions.items():
        components.setdefault(renames.get(name, name), _renamed(schema, renames))
    return {old: new for old, new in renames.items() if old != new}


def _name_for(name: str, schema: Any, components: dict[str, Any]) -> str:
    """``name``, or the name FastAPI already gave this very schema, or a free variant."""
    if components.get(name, schema) == schema:
        return name
    variants = [f"{name}-Output", *(f"{name}-Output{n}" for n in range(2, 100))]
    for variant in variants:
        if components.get(variant, schema) == schema:
            return variant
    raise RuntimeError(f"no free OpenAPI component name for {name}")  # pragma: no cover


def _without_none(schema: Any) -> Any:
    """``schema`` without the entries whose value is ``None`` (``"default": None``).

    FastAPI writes its document with ``exclude_none=True``, which drops them everywhere;
    ours must look the same, also to be recognised as equal to a model FastAPI lists.
    """
    if isinstance(schema, dict):
        return {key: _without_none(value) for key, value in schema.items() if value is not None}
    if isinstance(schema, list):
        return [_without_none(value) for value in schema]
    return schema


def _renamed(schema: Any, renames: dict[str, str]) -> Any:
    """``schema`` with its ``$ref``s to renamed models pointed at their new names."""
    if not renames:
        return schema
    if isinstance(schema, dict):
        result = {key: _renamed(value, renames) for key, value in schema.items()}
        reference = result.get("$ref")
        if isinstance(reference, str) and reference.startswith(REF_PREFIX):
            name = reference[len(REF_PREFIX) :]
            result["$ref"] = REF_PREFIX + renames.get(name, name)
        return result
    if isinstance(schema, list):
        return [_renamed(value, renames) for value in schema]
    return schema
