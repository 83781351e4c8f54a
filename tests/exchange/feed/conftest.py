import pytest
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer

from exchange.feed.selectors import account_organizations_forget


@pytest.fixture(autouse=True)
def _feed_reset():
    """Each test starts with no listener and no remembered account: the layer lives as long as
    the process, and a transactional test's database may reuse the ids of the last one."""
    account_organizations_forget()
    yield
    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        async_to_sync(layer.flush)()
    channel_layers.backends.clear()
    account_organizations_forget()
