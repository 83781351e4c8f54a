import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Seen request signatures live in the cache: each test starts without (rate limits are
    forgotten by the root conftest)."""
    cache.clear()
    yield
    cache.clear()
