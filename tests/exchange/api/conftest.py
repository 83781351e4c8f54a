import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate limits and seen request signatures live in the cache: each test starts without."""
    cache.clear()
    yield
    cache.clear()
