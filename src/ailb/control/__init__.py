"""MarchProxy's control interface: the gRPC ModuleService (status, routes, rate limits,
metrics, traffic weights, reload), with the standard health service and server reflection."""
