"""The OpenAPI document, generated from the same msgspec types that validate requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    request: Any = None  # a msgspec-describable type for the JSON body
    response: Any = None  # a msgspec-describable type for the 200 JSON body
    response_media: dict[str, Any] | None = None  # explicit 200 content, when not JSON
    errors: tuple[int, ...] = (400,)
    parameters: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""
    body_required: bool = True  # False: an empty body means the defaults
    # Other statuses answered with a body that is not the error object: {status: type}.
    other_responses: dict[int, Any] = field(default_factory=dict)
    # Types that `response_media` refers to (#/components/schemas/<name>).
    components: tuple[Any, ...] = ()


# Where the authenticator guards every request (AILB_MASTER_KEY set): 401 without a valid key.
AUTHENTICATED = ("/v1/", "/api/")
SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An AILB key or the master key"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
}


def path_param(
    name: str, description: str = "", schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema or {"type": "string"},
        "description": description,
    }


def query_param(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    """An optional query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def document(
    operations: list[Operation], title: str, version: str, description: str
) -> dict[str, Any]:
    types = [t for op in operations for t in (op.request, op.response) if t is not None]
    types += [t for op in operations for t in (*op.other_responses.values(), *op.components)]
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    schema_of = dict(zip((id(t) for t in types), schemas, strict=True))
    components = {**components, "Error": ERROR_SCHEMA}
    error_ref = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    }
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        if op.response_media is not None:
            media = dict(op.response_media)
            if op.response is not None:  # the JSON answer's type, beside the other media
                media["application/json"] = {"schema": schema_of[id(op.response)]}
            ok: dict[str, Any] = {"description": "OK", "content": media}
        else:
            body = schema_of[id(op.response)] if op.response is not None else {"type": "object"}
            ok = {"description": "OK", "content": {"application/json": {"schema": body}}}
        guarded = op.path.startswith(AUTHENTICATED)
        errors = set(op.errors)
        if guarded:
            errors.add(401)  # a missing, wrong, revoked or expired key (authentication on)
        if op.request is not None:
            errors |= {400, 413}  # malformed JSON or a field out of range; a body too large
        others = {
            str(status): {
                "description": "See the operation's description",
                "content": {"application/json": {"schema": schema_of[id(t)]}},
            }
            for status, t in op.other_responses.items()
        }
        entry: dict[str, Any] = {
            "tags": [op.tag],
            "summary": op.summary,
            "operationId": f"{op.method.lower()}_{op.path.strip('/').replace('/', '_')}".replace(
                "{", ""
            )
            .replace("}", "")
            .replace(".", "_"),
            "responses": {
                "200": ok,
                **{str(s): {"description": "Error", **error_ref} for s in sorted(errors)},
                **others,
            },
        }
        if guarded:
            entry["security"] = [{"bearer": []}, {"apiKey": []}]
        if op.description:
            entry["description"] = op.description
        if op.parameters:
            entry["parameters"] = op.parameters
        if op.request is not None:
            entry["requestBody"] = {
                "required": op.body_required,
                "content": {"application/json": {"schema": schema_of[id(op.request)]}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    doc: dict[str, Any] = ecma_patterns(
        {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version, "description": description},
            "paths": paths,
            "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
        }
    )
    return doc


def ecma_patterns(node: Any) -> Any:
    """`node` with each `pattern` in JSON Schema's dialect (ECMA 262). The validating patterns
    end in Python's `\\Z` (the end of the text: `$` would also match before a final newline);
    ECMA has no `\\Z`, and its `$` already means exactly that end."""
    if isinstance(node, dict):
        return {
            k: v[:-2] + "$"
            if k == "pattern" and isinstance(v, str) and v.endswith("\\Z")
            else ecma_patterns(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [ecma_patterns(v) for v in node]
    return node
