"""The shipped .proto is DESIGN §4's schema, and the installed modules are generated from it."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

from google.protobuf.descriptor import FieldDescriptor

from ailb.control import proto as proto_package
from ailb.control.proto import module_service_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]

# DESIGN.md §4, written out: message -> [(field, number, type)].
MESSAGES: dict[str, list[tuple[str, int, str]]] = {
    "StatusRequest": [],
    "StatusResponse": [
        ("module_id", 1, "string"),
        ("module_type", 2, "string"),
        ("version", 3, "string"),
        ("health", 4, "HealthStatus"),
        ("uptime_seconds", 5, "int64"),
        ("envoy_version", 6, "string"),
        ("metadata", 7, "map<string,string>"),
    ],
    "RoutesRequest": [("cluster_id", 1, "string")],
    "RoutesResponse": [("routes", 1, "repeated RouteConfig"), ("version", 2, "int64")],
    "RouteConfig": [
        ("name", 1, "string"),
        ("prefix", 2, "string"),
        ("cluster_name", 3, "string"),
        ("hosts", 4, "repeated string"),
        ("timeout_seconds", 5, "int32"),
        ("headers", 6, "map<string,string>"),
        ("enabled", 7, "bool"),
        ("rate_limit", 8, "RateLimitConfig"),
    ],
    "RateLimitRequest": [("route_name", 1, "string"), ("config", 2, "RateLimitConfig")],
    "RateLimitConfig": [
        ("requests_per_second", 1, "int32"),
        ("burst_size", 2, "int32"),
        ("enabled", 3, "bool"),
    ],
    "RateLimitResponse": [("success", 1, "bool"), ("message", 2, "string")],
    "MetricsRequest": [],
    "MetricsResponse": [
        ("timestamp", 1, "int64"),
        ("total_connections", 2, "int64"),
        ("active_connections", 3, "int64"),
        ("total_requests", 4, "int64"),
        ("requests_per_second", 5, "int64"),
        ("latency", 6, "LatencyMetrics"),
        ("status_codes", 7, "map<string,int64>"),
        ("routes", 8, "map<string,RouteMetrics>"),
    ],
    "LatencyMetrics": [
        ("p50_ms", 1, "double"),
        ("p90_ms", 2, "double"),
        ("p95_ms", 3, "double"),
        ("p99_ms", 4, "double"),
        ("avg_ms", 5, "double"),
    ],
    "RouteMetrics": [
        ("requests", 1, "int64"),
        ("errors", 2, "int64"),
        ("avg_latency_ms", 3, "double"),
    ],
    "TrafficWeightRequest": [("route_name", 1, "string"), ("weights", 2, "repeated TrafficWeight")],
    "TrafficWeight": [
        ("backend_name", 1, "string"),
        ("weight", 2, "int32"),
        ("version", 3, "string"),
    ],
    "TrafficWeightResponse": [
        ("success", 1, "bool"),
        ("message", 2, "string"),
        ("applied_weights", 3, "repeated TrafficWeight"),
    ],
    "ReloadRequest": [("force", 1, "bool")],
    "ReloadResponse": [
        ("success", 1, "bool"),
        ("message", 2, "string"),
        ("reload_timestamp", 3, "int64"),
    ],
}
METHODS = {
    "GetStatus": ("StatusRequest", "StatusResponse"),
    "GetRoutes": ("RoutesRequest", "RoutesResponse"),
    "ApplyRateLimit": ("RateLimitRequest", "RateLimitResponse"),
    "GetMetrics": ("MetricsRequest", "MetricsResponse"),
    "SetTrafficWeight": ("TrafficWeightRequest", "TrafficWeightResponse"),
    "Reload": ("ReloadRequest", "ReloadResponse"),
}
HEALTH_STATUS = [("HEALTHY", 0), ("UNHEALTHY", 1), ("DEGRADED", 2)]

_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_DOUBLE: "double",
}


def type_of(field: FieldDescriptor) -> str:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.name
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        entry = field.message_type
        if entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            return f"map<{type_of(key)},{type_of(value)}>"
        name = entry.name
    else:
        name = _SCALARS[field.type]
    return f"repeated {name}" if field.is_repeated else name


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("proto_generate", ROOT / "proto/generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_installed_modules_are_generated_from_the_proto(tmp_path):
    generator = load_generator()
    written = generator.write(tmp_path)
    installed = Path(proto_package.__file__).parent
    assert sorted(p.name for p in written) == [
        "module_service_pb2.py",
        "module_service_pb2.pyi",
        "module_service_pb2_grpc.py",
    ]
    for path in written:
        assert path.read_bytes() == (installed / path.name).read_bytes(), path.name
    # The gRPC module imports the messages from the package, not from a top-level module.
    grpc_module = (installed / "module_service_pb2_grpc.py").read_text()
    assert "from ailb.control.proto import module_service_pb2" in grpc_module
    assert "from marchproxy" not in grpc_module


def test_the_build_uses_the_grpcio_tools_of_the_dev_environment():
    # Same tools: the comparison above is byte for byte, and the generated code's version
    # checks (grpcio, protobuf) hold for the locked runtime.
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pins = [r for r in requires if re.match(r"grpcio-tools\s*==", r)]
    assert pins, requires
    assert pins[0].split("==")[1].strip() == importlib.metadata.version("grpcio-tools")


def test_the_proto_file_declares_the_package_and_service():
    text = (ROOT / "proto/marchproxy/module_service.proto").read_text()
    assert re.search(r'^syntax = "proto3";$', text, re.MULTILINE)
    assert re.search(r"^package marchproxy;$", text, re.MULTILINE)
    assert re.search(r"^service ModuleService \{$", text, re.MULTILINE)
    assert pb.DESCRIPTOR.name == "marchproxy/module_service.proto"


def test_descriptor_is_the_design_schema():
    d = pb.DESCRIPTOR
    assert d.package == "marchproxy"
    assert list(d.services_by_name) == ["ModuleService"]
    service = d.services_by_name["ModuleService"]
    assert service.full_name == "marchproxy.ModuleService"
    assert {m.name: (m.input_type.name, m.output_type.name) for m in service.methods} == METHODS
    assert not any(m.client_streaming or m.server_streaming for m in service.methods)
    assert list(d.enum_types_by_name) == ["HealthStatus"]
    enum = d.enum_types_by_name["HealthStatus"]
    assert [(v.name, v.number) for v in enum.values] == HEALTH_STATUS
    assert set(d.message_types_by_name) == set(MESSAGES)
    for name, expected in MESSAGES.items():
        message = d.message_types_by_name[name]
        actual = [(f.name, f.number, type_of(f)) for f in message.fields]
        assert actual == expected, name
