from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.clients.matrix import Matrix, start_matrix

# litellm reads these when imported (test_litellm.py, after this file): its model cost map from
# the package, not downloaded, and no telemetry.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_TELEMETRY", "False")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: Any) -> Iterator[Matrix]:
    """One gateway and three fake providers for a whole client module."""
    yield from start_matrix(tmp_path_factory.mktemp("clients"))
