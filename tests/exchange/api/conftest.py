import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Seen request signatures live in the cache: each test starts without (rate limits are
    forgotten by the root conftest)."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def matcher(settings):
    """An external matcher the test runs itself (``matching_in_thread`` while requests wait),
    with the API waiting up to 5 s for its outcomes."""
    from exchange.matcher.runtime import Matcher

    settings.EXCHANGE_MATCHER_MODE = "external"
    settings.EXCHANGE_API_MATCH_WAIT_SECONDS = 5
    return Matcher()
