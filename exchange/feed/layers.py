"""The production channel layer: channels_redis' layer, with the sends of many groups in two
round trips.

``RedisChannelLayer.group_send`` makes at least two round trips to Redis per group (expire the
group's old members, read the members), and two more per group that has members (expire the
channels' old messages, then a Lua script that appends the message). The matcher sends each
batch to up to three groups (the instrument's, and each trading organization's), so most of the
feed's cost was round trips, nearly all to groups nobody listens to.

``group_send_many`` sends several groups' messages with the same effect as one ``group_send``
per group in the order given, in one pipeline that reads every group and, when some have
members, one more that appends to every member channel. Consumers receive from the layer as
before. It uses the layer's own key, sharding, capacity and serialization methods (channels_redis
4.2 and 4.3), so a message is the bytes ``group_send`` would have written.
"""

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

from channels_redis.core import RedisChannelLayer as BaseRedisChannelLayer

logger = logging.getLogger(__name__)

# channels_redis' own script of ``group_send``: append the message to each channel under its
# capacity, and refresh the channel's expiry.
GROUP_SEND_LUA = """
    local over_capacity = 0
    local current_time = ARGV[#ARGV - 1]
    local expiry = ARGV[#ARGV]
    for i=1,#KEYS do
        if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
            redis.call('ZADD', KEYS[i], current_time, ARGV[i])
            redis.call('EXPIRE', KEYS[i], expiry)
        else
            over_capacity = over_capacity + 1
        end
    end
    return over_capacity
"""


# channels_redis' own script run before each pop: put back, in order, what an earlier receive
# popped into the channel's backup queue but never returned.
RESTORE_BACKUP_LUA = """
    local backed_up = redis.call('ZRANGE', ARGV[2], 0, -1, 'WITHSCORES')
    for i = #backed_up, 1, -2 do
        redis.call('ZADD', ARGV[1], backed_up[i], backed_up[i - 1])
    end
    redis.call('DEL', ARGV[2])
"""


def _cancellation_kept() -> None:
    """Raise the cancellation of the current task if something below swallowed it.

    redis-py sends each command inside ``asyncio.wait_for`` when the connection has a socket
    timeout (it always has one). On Python 3.11, ``wait_for`` drops a cancellation that arrives
    as the send completes (CPython gh-86296, fixed in 3.12), and channels_redis' receive then
    pops on forever: a WebSocket consumer cancels its receive when it closes, and one closed at
    once (a refused key) left a receive that never ended, so uvicorn waited for it on SIGTERM
    indefinitely. The task still counts the request (``cancelling()``); nothing in a receive
    ever cancels a cancellation on purpose."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


# How long a read from Redis may wait. redis-py (6 and later) gives every connection a read
# timeout of 5 s, the very time a consumer's blocking pop waits for its next message
# (``brpop_timeout``): a feed quiet for five seconds died with ``TimeoutError`` and its
# WebSocket was dropped. The layer's reads may wait longer than any pop; a dead server is still
# noticed.
SOCKET_TIMEOUT_SECONDS = 30


class RedisChannelLayer(BaseRedisChannelLayer):  # type: ignore[misc]  # channels_redis is untyped.
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.brpop_timeout < SOCKET_TIMEOUT_SECONDS
        # A host's own ``socket_timeout`` (a dict host) is kept.
        self.hosts: list[dict[str, Any]] = [
            {"socket_timeout": SOCKET_TIMEOUT_SECONDS, **host} for host in self.hosts
        ]
        self._last_score = 0.0

    async def _brpop_with_clean(self, index: int, channel: str, timeout: int) -> bytes | None:
        """channels_redis' pop of a receive (restore the backup queue, pop the next message,
        back it up), ending a cancelled receive even when redis-py swallowed the cancellation
        (``_cancellation_kept``): before each pop, and between its restore and its pop. A
        cancellation swallowed in the pop's own send is seen when that pop ends, at most
        ``brpop_timeout`` later; a popped message is always backed up before anything ends."""
        _cancellation_kept()
        backup_queue = self._backup_channel_name(channel)
        connection = self.connection(index)
        await connection.eval(RESTORE_BACKUP_LUA, 0, channel, backup_queue)
        _cancellation_kept()
        result = await connection.bzpopmin(channel, timeout=timeout)
        if result is None:
            return None
        _, member, timestamp = result
        await connection.zadd(backup_queue, {member: float(timestamp)})
        member_bytes: bytes = member
        return member_bytes

    async def group_send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> int:
        """Send each ``(group, message)`` to its group's members, in order; returns how many
        channel deliveries were refused for being over capacity (logged, as ``group_send``
        does)."""
        for group, _ in sends:
            assert self.require_valid_group_name(group), "Group name not valid"
        members = await self._members([group for group, _ in sends])
        # Per connection index: the channel keys and the (keys, args) of each script call.
        expiring: dict[int, set[bytes | str]] = defaultdict(set)
        scripts: dict[int, list[tuple[list[bytes | str], list[Any]]]] = defaultdict(list)
        now = time.time()
        for group, message in sends:
            channel_names = members[group]
            if not channel_names:
                continue
            by_connection, messages, capacities = self._map_channel_keys_to_connection(
                channel_names, message
            )
            for index, keys in by_connection.items():
                expiring[index].update(keys)
                arguments = [messages[key] for key in keys] + [capacities[key] for key in keys]
                scripts[index].append((keys, [*arguments, self._score(), self.expiry]))
        over_capacity = 0
        for index, calls in scripts.items():
            pipe = self.connection(index).pipeline(transaction=False)
            for key in expiring[index]:
                pipe.zremrangebyscore(key, min=0, max=int(now) - int(self.expiry))
            for keys, arguments in calls:
                pipe.eval(GROUP_SEND_LUA, len(keys), *keys, *arguments)
            results = await pipe.execute()
            over_capacity += sum(results[len(expiring[index]) :])
        if over_capacity:
            # As group_send says it: a listener that stopped reading loses these messages.
            logger.info("%s channel deliveries over capacity", over_capacity)
        return over_capacity

    def _score(self) -> float:
        """The time to file a message under: a channel's messages are a sorted set received
        lowest score first, so the sends of one call, and of calls in quick succession, take
        increasing scores (a microsecond apart, well above a double's resolution here)."""
        self._last_score = max(time.time(), self._last_score + 1e-6)
        return self._last_score

    async def _members(self, groups: list[str]) -> dict[str, list[str]]:
        """Each group's current channels, old members discarded first: one pipeline per Redis
        host that holds some of the groups."""
        by_connection: dict[int, list[str]] = defaultdict(list)
        for group in dict.fromkeys(groups):
            by_connection[self.consistent_hash(group)].append(group)
        oldest = int(time.time()) - self.group_expiry
        members: dict[str, list[str]] = {}
        for index, host_groups in by_connection.items():
            pipe = self.connection(index).pipeline(transaction=False)
            for group in host_groups:
                key = self._group_key(group)
                pipe.zremrangebyscore(key, min=0, max=oldest)
                pipe.zrange(key, 0, -1)
            results = await pipe.execute()
            for position, group in enumerate(host_groups):
                members[group] = [name.decode("utf8") for name in results[2 * position + 1]]
        return members
