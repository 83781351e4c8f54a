"""The production channel layer's ``group_send_many``, against a Redis server of the test's own."""

import asyncio
import inspect
import time

import pytest
import redis
from channels_redis.core import RedisChannelLayer as Upstream
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import AbstractConnection

from exchange.feed.layers import RESTORE_BACKUP_LUA, RedisChannelLayer


@pytest.fixture
def pipelines(monkeypatch) -> list[int]:
    """Each pipeline the layer sends, as its number of commands (one round trip each)."""
    sent: list[int] = []
    execute = Pipeline.execute

    async def counted(self, *args, **kwargs):
        sent.append(len(self.command_stack))
        return await execute(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", counted)
    return sent


def run(scenario):
    return asyncio.run(scenario())


async def received(layer: RedisChannelLayer, channel: str) -> list[dict]:
    """Every message waiting on ``channel``."""
    messages = []
    while True:
        try:
            messages.append(await asyncio.wait_for(layer.receive(channel), 0.3))
        except TimeoutError:
            return messages


def test_group_send_many_delivers_each_groups_messages_in_order(redis_url):
    layer = RedisChannelLayer(hosts=[redis_url])

    async def scenario():
        # given: one channel in two groups, one in one, and a group nobody is in
        both, only_a = await layer.new_channel(), await layer.new_channel()
        await layer.group_add("group.a", both)
        await layer.group_add("group.a", only_a)
        await layer.group_add("group.b", both)
        # when
        over = await layer.group_send_many(
            [
                ("group.a", {"type": "feed.batch", "n": 1}),
                ("group.b", {"type": "feed.batch", "n": 2}),
                ("group.nobody", {"type": "feed.batch", "n": 3}),
                ("group.a", {"type": "feed.batch", "n": 4}),
            ]
        )
        return over, await received(layer, both), await received(layer, only_a)

    over, to_both, to_only_a = run(scenario)

    # then: what a group_send per group in that order would have delivered
    assert over == 0
    assert [message["n"] for message in to_both] == [1, 2, 4]
    assert [message["n"] for message in to_only_a] == [1, 4]
    assert all(message["type"] == "feed.batch" for message in to_both + to_only_a)


def test_groups_nobody_listens_to_cost_one_round_trip(redis_url, pipelines):
    layer = RedisChannelLayer(hosts=[redis_url])
    sends = [(f"feed.organization.{n}", {"type": "feed.batch", "n": n}) for n in range(3)]

    async def scenario():
        await layer.group_send_many(sends)
        unheard = list(pipelines)
        listener = await layer.new_channel()
        await layer.group_add("feed.organization.1", listener)
        pipelines.clear()
        await layer.group_send_many(sends)
        return unheard, await received(layer, listener)

    unheard, to_listener = run(scenario)

    # then: one pipeline reading the three groups (expire old members, read members: six
    # commands); with a listener, one more appending to its channel (expire old messages, the
    # script)
    assert unheard == [6]
    assert pipelines == [6, 2]
    assert [message["n"] for message in to_listener] == [1]


def test_the_groups_old_members_are_dropped_and_a_full_channel_refuses(redis_url):
    layer = RedisChannelLayer(hosts=[redis_url], capacity=2, group_expiry=60)
    client = redis.Redis.from_url(redis_url)

    async def scenario():
        listener = await layer.new_channel()
        await layer.group_add("group.a", listener)
        # given: a member that joined longer ago than the group expiry
        client.zadd(layer._group_key("group.a"), {"specific.gone!x": time.time() - 120})
        # when: three messages to a channel that holds two
        over = await layer.group_send_many(
            [("group.a", {"type": "feed.batch", "n": n}) for n in range(3)]
        )
        return over, await received(layer, listener)

    over, to_listener = run(scenario)

    assert over == 1
    assert [message["n"] for message in to_listener] == [0, 1]
    assert client.zrange(layer._group_key("group.a"), 0, -1) != []
    assert b"specific.gone!x" not in client.zrange(layer._group_key("group.a"), 0, -1)


def test_an_invalid_group_name_sends_nothing(redis_url, pipelines):
    layer = RedisChannelLayer(hosts=[redis_url])

    with pytest.raises(TypeError, match="Group name must be"):
        run(lambda: layer.group_send_many([("ok", {"type": "x"}), ("not valid!", {"type": "x"})]))

    assert pipelines == []


def test_a_receive_outwaits_a_quiet_channel_and_gets_the_next_message(redis_url):
    """A consumer waits for its next message in pops of ``brpop_timeout`` (5 s). Each must end
    as a pop, not as the connection's read timeout (redis-py's default is 5 s too): a quiet
    feed's WebSocket was dropped after five seconds."""
    layer = RedisChannelLayer(hosts=[redis_url])

    async def scenario():
        channel = await layer.new_channel()
        waiting = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(layer.brpop_timeout + 1)  # One whole pop with nothing to pop.
        assert not waiting.done(), waiting  # Neither a message nor an error.
        await layer.send(channel, {"type": "feed.batch", "n": 1})
        return await asyncio.wait_for(waiting, 5)

    assert run(scenario) == {"type": "feed.batch", "n": 1}


def test_a_receive_ends_when_cancelled_though_redis_py_swallowed_the_cancellation(
    redis_url, monkeypatch
):
    """redis-py sends each command inside ``asyncio.wait_for``, which on Python 3.11 drops a
    cancellation arriving as the send completes. A WebSocket consumer closed at once (a refused
    key) cancelled its receive at such a moment, and the receive popped on forever: uvicorn
    then waited for it on SIGTERM without end. Here the cancellation arrives at exactly that
    moment, from inside the send."""
    layer = RedisChannelLayer(hosts=[redis_url])
    send = AbstractConnection._send_packed_command

    async def scenario():
        channel = await layer.new_channel()
        receiving = asyncio.ensure_future(layer.receive(channel))

        async def send_then_cancel(self, command):
            await send(self, command)
            if not receiving.cancelling():
                receiving.cancel()  # As the consumer's close does, while the send completes.

        monkeypatch.setattr(AbstractConnection, "_send_packed_command", send_then_cancel)
        # Well within one pop (brpop_timeout, 5 s): without the fix it never ends.
        done, _ = await asyncio.wait({receiving}, timeout=3)
        monkeypatch.undo()
        if not done:
            receiving.cancel()  # Let asyncio.run end; the receive was already lost.
            await asyncio.wait({receiving}, timeout=10)
        return done, receiving

    done, receiving = run(scenario)
    assert done, "the cancelled receive was still popping"
    assert receiving.cancelled()


def test_the_overridden_pop_is_still_channels_redis_own():
    """``_brpop_with_clean`` is channels_redis' method with cancellation checks added: its
    script and commands must be upstream's. An upgrade that changes them fails here, to be
    looked at, rather than running a pop that no longer matches the rest of the layer."""
    upstream = inspect.getsource(Upstream._brpop_with_clean)
    for line in filter(None, (line.strip() for line in RESTORE_BACKUP_LUA.splitlines())):
        assert line in upstream, line
    for command in (
        "await connection.eval(cleanup_script, 0, channel, backup_queue)",
        "result = await connection.bzpopmin(channel, timeout=timeout)",
        "await connection.zadd(backup_queue, {member: float(timestamp)})",
    ):
        assert command in upstream, command
