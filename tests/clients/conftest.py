from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.clients.matrix import Matrix, start_matrix


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: Any) -> Iterator[Matrix]:
    """One gateway and three fake providers for a whole client module."""
    yield from start_matrix(tmp_path_factory.mktemp("clients"))
