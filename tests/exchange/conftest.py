import pytest


@pytest.fixture(autouse=True)
def _inline_matcher_reset():
    """The inline matcher caches books in memory; each test starts from what its database holds."""
    from exchange.matcher import inline

    inline.reset()
    yield
    inline.reset()
