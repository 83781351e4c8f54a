"""Fixtures shared by the matching engine tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The matching tests run without the Django plugin (``-p no:django``), which is what
# otherwise puts the repository root on the import path.
_REPOSITORY_ROOT = str(Path(__file__).resolve().parents[2])
if _REPOSITORY_ROOT not in sys.path:
    sys.path.insert(0, _REPOSITORY_ROOT)

from matching import Engine  # noqa: E402
from matching.reference import ReferenceEngine  # noqa: E402


@pytest.fixture(params=[Engine, ReferenceEngine], ids=["fast", "reference"])
def engine_class(request: pytest.FixtureRequest) -> type[Engine] | type[ReferenceEngine]:
    """Each contract test runs against the fast engine and the reference engine."""
    engine_type: type[Engine] | type[ReferenceEngine] = request.param
    return engine_type
