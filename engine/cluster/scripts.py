"""The Lua scripts that make every grant, renewal, release and resize atomic in Redis.

A shared backend's cap is a fair semaphore made of leases:

- `holders`: ticket -> lease expiry (ms on Redis's own clock, `TIME`, so the nodes' clocks
  never matter). A lease ends at its expiry unless the holder's heartbeat renews it.
- `queue`: ticket -> arrival number (`INCR seq`): waiting is first come, first served in
  the order requests reached Redis. A ticket is `<node id>|<n>`; an entry whose node's
  heartbeat has expired is dropped when it reaches the head.
- A ticket is granted only when it is among the first `limit - holders` live entries of
  the queue (the window), so nobody overtakes, and never while `holders >= limit` (no
  over-grant after a shrink). Nodes with entries in the window are woken on their own
  channel, so a release wakes the next in line, not every node.
- `epoch` / `fence`: when a Redis that lost its data (restarted without persistence) is
  first seen by a node that knew the old data, grants wait one lease (`fence`), long enough
  for every live node to re-assert the leases it still holds.

Every script returns plain arrays; `ClusterLink` and `ClusterLimiter` read them.
"""

from __future__ import annotations

__all__ = [
    "ACQUIRE",
    "HEARTBEAT",
    "KNOB_JOIN",
    "KNOB_SET",
    "LEAVE",
    "NODES",
    "RELEASE",
    "RESIZE",
]

_PRELUDE = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function node_of(ticket)
  return string.match(ticket, '^(.*)|')
end

-- The data set's epoch; a node that knew one (`known`) finding none means Redis lost its
-- data: hold grants for one lease while the nodes re-assert what they hold.
local function check_epoch(epoch_key, fence_key, known, fresh, lease)
  local current = redis.call('GET', epoch_key)
  if current then
    return current
  end
  redis.call('SET', epoch_key, fresh)
  if known ~= '' then
    redis.call('SET', fence_key, '1', 'PX', lease)
  end
  return fresh
end

-- The first `free` live entries of the queue, oldest first (dead nodes' entries dropped).
local function window(queue, nodes, free, now, self_id)
  local out = {}
  local start = 0
  while #out < free do
    local batch = redis.call('ZRANGE', queue, start, start + (free - #out) - 1)
    if #batch == 0 then
      break
    end
    for _, entry in ipairs(batch) do
      local node = node_of(entry)
      local alive = node == self_id
      if not alive and node then
        local expiry = redis.call('ZSCORE', nodes, node)
        alive = expiry and tonumber(expiry) > now
      end
      if alive then
        out[#out + 1] = entry
        start = start + 1
      else
        redis.call('ZREM', queue, entry)
      end
    end
  end
  return out
end

-- Wake every other node with an entry in the window; grant the caller's own entries when
-- `grant` is set (returned), else report whether the caller has one (1 or 0).
local function serve_window(keys_holders, keys_queue, keys_limit, nodes, fence, self_id,
                            now, lease, wake_prefix, backend, grant)
  local granted = {}
  local mine = 0
  local limit = redis.call('GET', keys_limit)
  if not limit or redis.call('EXISTS', fence) == 1 then
    return granted, mine
  end
  local free = tonumber(limit) - redis.call('ZCARD', keys_holders)
  if free <= 0 then
    return granted, mine
  end
  local woken = {}
  for _, entry in ipairs(window(keys_queue, nodes, free, now, self_id)) do
    local node = node_of(entry)
    if node == self_id then
      mine = 1
      if grant then
        redis.call('ZREM', keys_queue, entry)
        redis.call('ZADD', keys_holders, now + lease, entry)
        granted[#granted + 1] = entry
      end
    elseif not woken[node] then
      woken[node] = true
      redis.call('PUBLISH', wake_prefix .. node, backend)
    end
  end
  return granted, mine
end
"""

# KEYS: holders, queue, seq, limit, nodes, epoch, fence
# ARGV: self id, lease ms, known epoch, fresh epoch, default limit, wake prefix, backend,
#       tickets to enqueue (or re-enqueue) ...
# -> {epoch, {granted tickets}, limit, holders, queued, fence ms left}
ACQUIRE = (
    _PRELUDE
    + r"""
local now = now_ms()
local self_id, lease = ARGV[1], tonumber(ARGV[2])
local epoch = check_epoch(KEYS[6], KEYS[7], ARGV[3], ARGV[4], lease)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('GET', KEYS[4]) then
  redis.call('SET', KEYS[4], ARGV[5])
end
local already = {}
for i = 8, #ARGV do
  local ticket = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], ticket) then
    already[#already + 1] = ticket  -- granted by a call whose answer was lost
  elseif not redis.call('ZSCORE', KEYS[2], ticket) then
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ticket)
  end
end
local granted = serve_window(KEYS[1], KEYS[2], KEYS[4], KEYS[5], KEYS[7], self_id, now,
                             lease, ARGV[6], ARGV[7], true)
for _, ticket in ipairs(already) do
  granted[#granted + 1] = ticket
end
return {epoch, granted, tonumber(redis.call('GET', KEYS[4])), redis.call('ZCARD', KEYS[1]),
        redis.call('ZCARD', KEYS[2]), redis.call('PTTL', KEYS[7])}
"""
)

# KEYS: holders, queue, limit, nodes, fence
# ARGV: self id, wake prefix, backend, tickets ...
# -> {mine (1: the caller has an entry in the window), holders, queued}
RELEASE = (
    _PRELUDE
    + r"""
local now = now_ms()
for i = 4, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local _, mine = serve_window(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], now, 0,
                             ARGV[2], ARGV[3], false)
return {mine, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])}
"""
)

# KEYS: holders, queue, limit, nodes, fence
# ARGV: self id, wake prefix, backend, new limit
# -> {mine, holders, queued}
RESIZE = (
    _PRELUDE
    + r"""
local now = now_ms()
redis.call('SET', KEYS[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local _, mine = serve_window(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], now, 0,
                             ARGV[2], ARGV[3], false)
return {mine, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])}
"""
)

# KEYS: nodes, epoch, fence, node info, knob seq, then per backend: holders, queue, limit
# ARGV: self id, lease ms, known epoch, fresh epoch, node card JSON, wake prefix, backends,
#       then per backend: name, n, n held tickets (renewed, or re-added after a data loss)
# -> {epoch, live nodes, knob version, fence ms left,
#     per backend: {name, limit (-1: unknown), holders, queued, mine}}
HEARTBEAT = (
    _PRELUDE
    + r"""
local now = now_ms()
local self_id, lease = ARGV[1], tonumber(ARGV[2])
local epoch = check_epoch(KEYS[2], KEYS[3], ARGV[3], ARGV[4], lease)
redis.call('ZADD', KEYS[1], now + lease, self_id)
redis.call('SET', KEYS[4], ARGV[5], 'PX', lease)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {epoch, redis.call('ZCARD', KEYS[1]), tonumber(redis.call('GET', KEYS[5]) or '0'),
             redis.call('PTTL', KEYS[3])}
local at = 8
for b = 1, tonumber(ARGV[7]) do
  local holders, queue, limit = KEYS[5 + 3 * b - 2], KEYS[5 + 3 * b - 1], KEYS[5 + 3 * b]
  local name, n = ARGV[at], tonumber(ARGV[at + 1])
  for i = 1, n do
    redis.call('ZADD', holders, now + lease, ARGV[at + 1 + i])
  end
  at = at + 2 + n
  redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
  local _, mine = serve_window(holders, queue, limit, KEYS[1], KEYS[3], self_id, now, 0,
                               ARGV[6], name, false)
  out[#out + 1] = {name, tonumber(redis.call('GET', limit) or '-1'),
                   redis.call('ZCARD', holders), redis.call('ZCARD', queue), mine}
end
return out
"""
)

# KEYS: nodes, node info.  ARGV: self id.  A node leaving: its card and heartbeat go at once.
LEAVE = r"""
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

# KEYS: nodes.  ARGV: node info prefix.  -> {card JSON, expiry ms, ...} of the live nodes
NODES = (
    _PRELUDE
    + r"""
local now = now_ms()
local out = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf', 'WITHSCORES')
for i = 1, #ids, 2 do
  local card = redis.call('GET', ARGV[1] .. ids[i])
  if card then
    out[#out + 1] = card
    out[#out + 1] = ids[i + 1]
  end
end
return {now, out}
"""
)

# KEYS: knobs, knob versions, knob seq.  ARGV: origin, channel, name, JSON value, ...
# One version for the whole change, published to every node.  -> version
KNOB_SET = r"""
local version = redis.call('INCR', KEYS[3])
local values = {}
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[2], ARGV[i], version)
  values[ARGV[i]] = ARGV[i + 1]
end
redis.call('PUBLISH', ARGV[2], cjson.encode({origin = ARGV[1], version = version,
                                             values = values}))
return version
"""

# KEYS: knobs, knob versions, knob seq.  ARGV: origin, channel, name, JSON value, ...
# A joining node: the values the cluster lacks are written (and published); then the whole
# hash comes back.  -> {{name, value, ...}, {name, version, ...}}
KNOB_JOIN = r"""
local version = nil
local added = {}
for i = 3, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then
    version = version or redis.call('INCR', KEYS[3])
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i], version)
    added[ARGV[i]] = ARGV[i + 1]
  end
end
if version then
  redis.call('PUBLISH', ARGV[2], cjson.encode({origin = ARGV[1], version = version,
                                               values = added}))
end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"""
