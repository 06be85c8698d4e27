"""The OpenAPI schema: it builds, documents every route, and describes an API that answers bad input
with a 4xx, never a 5xx. The sweep reads the schema, so routes added later are covered as they come."""

from __future__ import annotations

import copy
import functools
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from fastapi.routing import APIRoute

from tessera.main import create_app
from tessera.settings import Settings
from tests.conftest import fresh_database
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn, register

HEALTH_PATHS = {"/health", "/health/ready", "/metrics"}
BODY_METHODS = {"post", "put", "patch", "delete"}
_unique = itertools.count(1)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    app = create_app(make_settings(database_url="sqlite:///unused.db"))
    built: dict[str, Any] = app.openapi()
    return built


# One database and one app per backend for the whole module: the sweep sends bad input to every
# operation, each test as a new owner of a new organization, so tests cannot see each other's
# state, and a fresh database and app per operation cost most of the suite's time.
module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with fresh_database(backend, request, tmp_path_factory.mktemp("sweep")) as url:
        yield url


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # The sweep sends thousands of requests.
    data_dir = tmp_path_factory.mktemp("sweep-data")
    return make_settings(database_url=database_url, data_dir=data_dir, rate_limit={"enabled": False})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture(loop_scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


# --- the schema itself ------------------------------------------------------------------------


def test_schema_builds_as_openapi_3_1(schema: dict[str, Any]) -> None:
    assert schema["openapi"].startswith("3.1")
    assert schema["info"]["title"] == "Tessera"
    assert schema["paths"]
    json.dumps(schema)  # serialisable as served at /openapi.json


@module_loop
async def test_schema_is_served(client: httpx.AsyncClient, schema: dict[str, Any]) -> None:
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    assert response.json()["paths"].keys() == schema["paths"].keys()


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_every_reference_resolves(schema: dict[str, Any]) -> None:
    components = schema.get("components", {}).get("schemas", {})

    broken = sorted({ref for ref in refs(schema) if ref.removeprefix("#/components/schemas/") not in components})

    assert not broken, f"unresolved $ref: {broken}"


def test_operation_ids_are_unique(schema: dict[str, Any]) -> None:
    ids = [op["operationId"] for ops in schema["paths"].values() for op in ops.values()]

    assert len(ids) == len(set(ids))


def documented_routes() -> list[APIRoute]:
    app = create_app(make_settings(database_url="sqlite:///unused.db"))
    return [
        route
        for route in app.routes
        if isinstance(route, APIRoute)
        and route.include_in_schema
        and (route.path.startswith("/api/v1/") or route.path in HEALTH_PATHS)
    ]


def test_every_api_and_health_route_has_a_summary_or_description() -> None:
    routes = documented_routes()

    # FastAPI makes up a summary from the function name; only a written one counts.
    missing = [f"{sorted(route.methods)} {route.path}" for route in routes if not (route.summary or route.description)]

    assert {route.path for route in routes} >= HEALTH_PATHS
    assert not missing, "routes without a summary or description:\n  " + "\n  ".join(missing)


def test_every_api_route_has_a_tag(schema: dict[str, Any]) -> None:
    untagged = [
        f"{method.upper()} {path}"
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
        if not op.get("tags")
    ]

    assert not untagged


def test_error_responses_use_the_error_shape(schema: dict[str, Any]) -> None:
    """Declared error examples (`AppError.schema()`) show the one error shape."""
    wrong = []
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            for status, response in op.get("responses", {}).items():
                example = response.get("content", {}).get("application/json", {}).get("example")
                if status.startswith(("4", "5")) and example is not None and set(example) != {"error"}:
                    wrong.append(f"{method.upper()} {path} {status}")

    assert not wrong


# --- the bad-input sweep ----------------------------------------------------------------------


@dataclass
class Operation:
    method: str
    path: str
    spec: dict[str, Any] = field(repr=False)

    @property
    def path_params(self) -> list[dict[str, Any]]:
        return [param for param in self.spec.get("parameters", []) if param["in"] == "path"]

    @property
    def query_params(self) -> list[dict[str, Any]]:
        return [param for param in self.spec.get("parameters", []) if param["in"] == "query"]

    def body_schema(self, media_type: str) -> dict[str, Any] | None:
        content = self.spec.get("requestBody", {}).get("content", {})
        found: dict[str, Any] | None = content.get(media_type, {}).get("schema")
        return found

    def url(self, **values: str) -> str:
        url = self.path
        for param in self.path_params:
            url = url.replace("{" + param["name"] + "}", values.get(param["name"], str(uuid.uuid4())))
        return url

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"


@functools.cache
def operations() -> list[Operation]:
    """Built once per process: collection asks four times, and building the app and its schema takes a second."""
    app = create_app(make_settings(database_url="sqlite:///unused.db"))
    found = []
    for path, ops in app.openapi()["paths"].items():
        for method, spec in ops.items():
            if path.startswith("/api/v1/") or path in HEALTH_PATHS:
                found.append(Operation(method, path, spec))
    return found


class Schemas:
    """Makes valid and invalid values from the schema's JSON Schema."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.components: dict[str, Any] = schema.get("components", {}).get("schemas", {})

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self.components[node["$ref"].removeprefix("#/components/schemas/")]
        for key in ("anyOf", "oneOf"):
            if key in node:
                options = [self.resolve(option) for option in node[key] if option.get("type") != "null"]
                if options:
                    merged = {k: v for k, v in node.items() if k != key}
                    return {**options[0], **merged}
        if "allOf" in node and len(node["allOf"]) == 1:
            return {**self.resolve(node["allOf"][0]), **{k: v for k, v in node.items() if k != "allOf"}}
        return node

    def properties(self, node: dict[str, Any]) -> dict[str, dict[str, Any]]:
        props: dict[str, dict[str, Any]] = self.resolve(node).get("properties", {})
        return props

    def required(self, node: dict[str, Any]) -> list[str]:
        names: list[str] = self.resolve(node).get("required", [])
        return names

    def valid(self, node: dict[str, Any]) -> Any:
        node = self.resolve(node)
        if "const" in node:
            return node["const"]
        if node.get("enum"):
            return node["enum"][0]
        if node.get("examples"):
            example = node["examples"][0]
            return f"fuzz{next(_unique)}-{example}" if node.get("format") == "email" else example
        kind = node.get("type")
        if kind == "string":
            text = {
                "email": f"fuzz{next(_unique)}@example.com",
                "uuid": str(uuid.uuid4()),
                "date-time": "2031-01-01T00:00:00Z",
            }.get(node.get("format", ""), "Fuzz-value-0123456789")
            return text[: node.get("maxLength", len(text))].ljust(node.get("minLength", 0), "x")
        if kind in ("integer", "number"):
            return node.get("minimum", 1)
        if kind == "boolean":
            return False
        if kind == "array":
            return [self.valid(node.get("items", {"type": "string"}))] * max(1, node.get("minItems", 1))
        if kind == "object" or "properties" in node:
            return {name: self.valid(prop) for name, prop in self.properties(node).items()}
        return "fuzz"

    def wrong_type(self, node: dict[str, Any]) -> Any:
        kind = self.resolve(node).get("type")
        return {
            "string": 12345,
            "integer": "twelve",
            "number": "twelve",
            "boolean": "maybe",
            "array": "not-a-list",
            "object": ["not", "an", "object"],
        }.get(kind, {"unexpected": True})

    def hostile_strings(self, node: dict[str, Any]) -> list[Any]:
        """Values that pass a plain `str` check and may break what comes after validation."""
        if self.resolve(node).get("type") != "string":
            return []
        return ["nul\x00inside", "x" * 20_000, "  ", "\u202eright-to-left", "' OR '1'='1", "😀" * 50]


@dataclass
class Sweep:
    client: httpx.AsyncClient
    owner: SignedIn
    failures: list[str] = field(default_factory=list)
    sent: int = 0

    async def send(self, label: str, request: httpx.Request, *, expect_4xx: bool) -> None:
        request.headers.update(self.owner.headers)
        response = await self.client.send(request)
        self.sent += 1
        ok = 400 <= response.status_code < 500 if expect_4xx else response.status_code < 500
        if not ok:
            self.failures.append(f"{label}: {response.status_code} {response.text[:200]}")
        if response.status_code >= 500:
            return
        if response.status_code >= 400:
            body = response.json()
            if set(body) != {"error"}:
                self.failures.append(f"{label}: {response.status_code} not in the error shape: {response.text[:200]}")


@pytest_asyncio.fixture(loop_scope="module")
async def sweep_owner(client: httpx.AsyncClient) -> SignedIn:
    return await register(client)


def json_body_operations() -> list[Operation]:
    return [op for op in operations() if op.body_schema("application/json") is not None]


@module_loop
@pytest.mark.parametrize("operation", json_body_operations(), ids=str)
async def test_bad_json_bodies_get_a_4xx(
    operation: Operation, client: httpx.AsyncClient, sweep_owner: SignedIn, schema: dict[str, Any]
) -> None:
    schemas = Schemas(schema)
    body = operation.body_schema("application/json")
    assert body is not None
    properties = schemas.properties(body)
    required = schemas.required(body)
    sweep = Sweep(client, sweep_owner)
    url = operation.url()
    method = operation.method.upper()

    def request(content: bytes) -> httpx.Request:
        return client.build_request(method, url, content=content, headers={"content-type": "application/json"})

    await sweep.send("invalid JSON", request(b'{"unterminated": '), expect_4xx=True)
    await sweep.send("JSON array", request(b"[]"), expect_4xx=True)
    await sweep.send("JSON string", request(b'"text"'), expect_4xx=True)
    await sweep.send("JSON null", request(b"null"), expect_4xx=bool(required))
    await sweep.send("unknown field", request(json.dumps({"zzz_unknown": 1}).encode()), expect_4xx=bool(required))
    if properties:
        wrong = {name: schemas.wrong_type(prop) for name, prop in properties.items()}
        await sweep.send("every field of the wrong type", request(json.dumps(wrong).encode()), expect_4xx=True)
        nulls = {name: None for name in properties}
        await sweep.send("every field null", request(json.dumps(nulls).encode()), expect_4xx=bool(required))
        valid = schemas.valid(body)
        for name, prop in properties.items():
            for value in schemas.hostile_strings(prop):
                candidate = copy.deepcopy(valid)
                candidate[name] = value
                await sweep.send(f"{name}={value[:20]!r}", request(json.dumps(candidate).encode()), expect_4xx=False)
    # Last, as it may succeed (all fields optional) and change the owner's state.
    await sweep.send("empty object", request(b"{}"), expect_4xx=bool(required))

    assert sweep.sent >= 6
    assert not sweep.failures, f"{operation}:\n  " + "\n  ".join(sweep.failures)


def form_body_operations() -> list[Operation]:
    return [op for op in operations() if op.body_schema("application/x-www-form-urlencoded") is not None]


@module_loop
@pytest.mark.parametrize("operation", form_body_operations(), ids=str)
async def test_bad_form_bodies_get_a_4xx(
    operation: Operation, client: httpx.AsyncClient, sweep_owner: SignedIn
) -> None:
    sweep = Sweep(client, sweep_owner)
    url = operation.url()
    method = operation.method.upper()

    await sweep.send("empty form", client.build_request(method, url, data={}), expect_4xx=True)
    await sweep.send("JSON instead of a form", client.build_request(method, url, json={"username": 1}), expect_4xx=True)
    await sweep.send(
        "wrong grant type",
        client.build_request(method, url, data={"username": "a@example.com", "password": "p", "grant_type": "magic"}),
        expect_4xx=True,
    )
    await sweep.send(
        "huge username",
        client.build_request(method, url, data={"username": "x" * 5_000, "password": "p"}),
        expect_4xx=True,
    )

    assert not sweep.failures, f"{operation}:\n  " + "\n  ".join(sweep.failures)


def path_param_operations() -> list[Operation]:
    return [op for op in operations() if op.path_params]


@module_loop
@pytest.mark.parametrize("operation", path_param_operations(), ids=str)
async def test_non_uuid_path_parameters_get_a_4xx(
    operation: Operation, client: httpx.AsyncClient, sweep_owner: SignedIn, schema: dict[str, Any]
) -> None:
    schemas = Schemas(schema)
    sweep = Sweep(client, sweep_owner)
    body = operation.body_schema("application/json")
    payload = schemas.valid(body) if body is not None else None

    for value in ("not-a-uuid", "12345", "0", "x" * 300, "' OR '1'='1", "%00", "00000000-0000-0000-0000-00000000000g"):
        url = operation.url(**{param["name"]: value for param in operation.path_params})
        request = client.build_request(operation.method.upper(), url, json=payload)
        await sweep.send(f"{value[:20]!r}", request, expect_4xx=True)
    # A well-formed id that names nothing is a 404, not a 500.
    await sweep.send(
        "unknown id", client.build_request(operation.method.upper(), operation.url(), json=payload), expect_4xx=True
    )

    assert not sweep.failures, f"{operation}:\n  " + "\n  ".join(sweep.failures)


def query_param_operations() -> list[Operation]:
    return [op for op in operations() if op.query_params]


def hostile_query_values(schemas: Schemas, param: dict[str, Any]) -> list[str]:
    node = schemas.resolve(param.get("schema", {}))
    kind, fmt = node.get("type"), node.get("format")
    values = ["", "x" * 5_000, "nul\x00inside"]
    if kind == "integer":
        values += ["abc", "-1", "0", "1.5", str(10**20)]
    elif kind == "boolean":
        values += ["maybe", "2"]
    elif fmt == "uuid":
        values += ["not-a-uuid", "1"]
    elif fmt == "date-time":
        values += ["not-a-date", "2031-01-01T00:00:00", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00Z"]
    else:
        values += ["!!!!", "AAAA", "A" * 22, "%", "' OR '1'='1"]
    return values


@module_loop
@pytest.mark.parametrize("operation", query_param_operations(), ids=str)
async def test_bad_query_parameters_never_get_a_5xx(
    operation: Operation, client: httpx.AsyncClient, sweep_owner: SignedIn, schema: dict[str, Any]
) -> None:
    schemas = Schemas(schema)
    sweep = Sweep(client, sweep_owner)

    for param in operation.query_params:
        for value in hostile_query_values(schemas, param):
            request = client.build_request(operation.method.upper(), operation.url(), params={param["name"]: value})
            await sweep.send(f"{param['name']}={value[:20]!r}", request, expect_4xx=False)

    assert not sweep.failures, f"{operation}:\n  " + "\n  ".join(sweep.failures)


@module_loop
@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "x" * 4_000},
        {"Authorization": "Bearer a.b.c"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": "x" * 4_000},
        {"X-API-Key": ""},
    ],
    ids=["empty-bearer", "huge-bearer", "fake-jwt", "basic", "huge-key", "empty-key"],
)
async def test_garbage_credentials_get_a_401(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get("/api/v1/auth/me", headers=headers)

    assert response.status_code == 401, response.text
    assert set(response.json()) == {"error"}


@module_loop
@pytest.mark.parametrize(
    "org_header",
    ["not-a-uuid", "4a0f3c9e-3b7e-4c5e-9d0a-2f6b8c1d7e90", "x" * 500],
    ids=["not-a-uuid", "unknown-org", "huge"],
)
async def test_bad_org_header_gets_a_4xx(client: httpx.AsyncClient, sweep_owner: SignedIn, org_header: str) -> None:
    response = await client.get("/api/v1/orgs/current", headers={**sweep_owner.headers, "X-Org-Id": org_header})

    assert 400 <= response.status_code < 500, response.text


def test_sweep_covers_the_api() -> None:
    """Guards the sweep against silently covering nothing (a schema change that hides the bodies)."""
    assert len(json_body_operations()) >= 10
    assert path_param_operations()
    assert query_param_operations()
    assert form_body_operations()


@module_loop
async def test_app_fixture_serves_the_same_schema(app: FastAPI, schema: dict[str, Any]) -> None:
    assert app.openapi()["paths"].keys() == schema["paths"].keys()
