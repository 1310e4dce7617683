"""A local cluster: the deploy/compose.yaml topology as processes on 127.0.0.1 (`ailb cluster`,
and a Python API for tests: `with Cluster(ClusterOptions(...)) as c: ...`)."""

from ailb.cluster.cluster import Cluster, ClusterOptions, missing
from ailb.cluster.process import ClusterError, ManagedProcess
from ailb.cluster.services import Instance

__all__ = ["Cluster", "ClusterError", "ClusterOptions", "Instance", "ManagedProcess", "missing"]
