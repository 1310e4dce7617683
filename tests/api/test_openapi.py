"""GET /openapi.json: a well-formed OpenAPI 3.x document for the gateway's endpoints."""

from __future__ import annotations

import re
from typing import Any

import httpx2

from ailb import __version__

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def fetch(gateway_factory: Any) -> httpx2.Response:
    gw = gateway_factory("deployments:\n  - {name: demo, provider: mock, models: [mock]}\n")
    return httpx2.get(f"{gw.url}/openapi.json")


def test_openapi_document_is_valid_json_openapi_3(gateway_factory: Any) -> None:
    resp = fetch(gateway_factory)
    assert resp.status_code == 200
    assert resp.headers["content-type"].split(";")[0] == "application/json"
    doc = resp.json()
    assert re.fullmatch(r"3\.\d+\.\d+", doc["openapi"])
    assert doc["info"]["title"] == "AILB" and doc["info"]["version"] == __version__
    assert set(doc) <= {"openapi", "info", "paths", "components", "servers", "tags", "webhooks"}

    operation_ids = []
    for path, item in doc["paths"].items():
        assert path.startswith("/")
        assert item and set(item) <= METHODS, path
        # Every {template} in a path is declared as a required path parameter.
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{([^}]+)}", path)), (method, path)
            path_params = [p for p in op.get("parameters", []) if p["in"] == "path"]
            assert all(p["required"] is True for p in path_params), (method, path)
            assert "200" in op["responses"], (method, path)
            for status, r in op["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", status) and r["description"], (method, path)
            operation_ids.append(op["operationId"])
    assert len(operation_ids) == len(set(operation_ids))

    # Every reference points at a schema that exists.
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_openapi_lists_the_public_endpoints(gateway_factory: Any) -> None:
    doc = fetch(gateway_factory).json()
    paths = doc["paths"]
    assert {"/v1/chat/completions", "/v1/models", "/healthz"} <= set(paths)
    assert set(paths["/v1/chat/completions"]) == {"post"}
    assert set(paths["/v1/models"]) == {"get"}
    assert set(paths["/healthz"]) == {"get"}
    assert "/openapi.json" not in paths

    chat = paths["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    request = doc["components"]["schemas"]["ChatCompletionRequest"]
    assert {"model", "messages"} <= set(request["required"])
    assert {"session_id", "stream", "tools"} <= set(request["properties"])
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert {"400", "404", "413", "429", "502", "503", "504"} <= set(chat["responses"])
    assert chat["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }

    embeddings = paths["/v1/embeddings"]["post"]
    body = embeddings["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/EmbeddingRequest"}
    request = doc["components"]["schemas"]["EmbeddingRequest"]
    assert set(request["required"]) == {"model", "input"}
    assert set(request["properties"]["encoding_format"]["anyOf"][0]["enum"]) == {"float", "base64"}
    assert len(request["properties"]["input"]["anyOf"]) == 4  # the four shapes OpenAI takes
    assert embeddings["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EmbeddingList"
    }

    models = paths["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]
    assert models["schema"] == {"$ref": "#/components/schemas/ModelList"}
    health = paths["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]
    assert health["schema"] == {"$ref": "#/components/schemas/HealthReport"}
    assert set(doc["components"]["schemas"]["HealthReport"]["required"]) >= {
        "status",
        "providers",
    }


def test_openapi_document_describes_what_the_endpoints_answer(gateway_factory: Any) -> None:
    gw = gateway_factory("deployments:\n  - {name: demo, provider: mock, models: [mock]}\n")
    doc = httpx2.get(f"{gw.url}/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for path, name in (("/v1/models", "ModelList"), ("/healthz", "HealthReport")):
        answer = httpx2.get(f"{gw.url}{path}").json()
        assert set(schemas[name]["required"]) <= set(answer), path
        assert set(answer) <= set(schemas[name]["properties"]), path


def test_openapi_describes_both_model_lists_and_the_admin_only_stats(
    gateway_factory: Any,
) -> None:
    """A plain key's /v1/models (ids only) and an admin's (with deployments) both fit the one
    documented schema; /api/routing/stats documents its 403."""
    master = "master-key-openapi-models-0123"
    gw = gateway_factory(
        "deployments:\n  - {name: demo, provider: mock, models: [mock]}\n",
        {"AILB_MASTER_KEY": master},
    )
    doc = httpx2.get(f"{gw.url}/openapi.json").json()
    model = doc["components"]["schemas"]["Model"]
    assert "deployments" in model["properties"] and "deployments" not in model["required"]
    assert "403" in doc["paths"]["/api/routing/stats"]["get"]["responses"]
    admin = {"Authorization": f"Bearer {master}"}
    plain = httpx2.post(f"{gw.url}/api/keys", json={"name": "p"}, headers=admin).json()["key"]
    for headers, has_deployments in ((admin, True), ({"Authorization": f"Bearer {plain}"}, False)):
        (entry,) = httpx2.get(f"{gw.url}/v1/models", headers=headers).json()["data"]
        assert set(model["required"]) <= set(entry) <= set(model["properties"])
        assert ("deployments" in entry) is has_deployments


def patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return own + [p for v in node.values() for p in patterns(v)]
    if isinstance(node, list):
        return [p for v in node for p in patterns(v)]
    return []


def test_openapi_patterns_are_json_schemas_dialect(gateway_factory: Any) -> None:
    """The validating patterns end in Python's \\Z (`$` lets a final newline through); JSON
    Schema's patterns are ECMA 262, which has no \\Z and whose `$` is already the very end."""
    found = patterns(fetch(gateway_factory).json())
    assert len(found) >= 8 and not [p for p in found if "\\Z" in p], found
    assert r"^[a-zA-Z0-9._-]{3,512}$" in found  # a collection name, as validated
