"""The Lua scripts that make the Redis backend's multi-key writes atomic.

Redis runs a script without interleaving any other command, so a check and the writes that depend
on it cannot race. Scripts touch keys they derive from the prefix (the item index of a forgotten
event), so the backend needs a single Redis server (with replicas if wanted), not Redis Cluster.
Return values are arrays of integers; status ``0`` applied, ``1`` duplicate, ``2`` version conflict.
"""

from __future__ import annotations

APPLY = """
-- KEYS: 1 event ids, 2 events, 3 log, 4 sequence, 5 user's events, 6 item's events, 7 state, 8 users
-- ARGV: 1 event id, 2 event json, 3 '1' to write the state, 4 expected version, 5 data, 6 now,
--       7 user id
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  return {1, tonumber(existing), tonumber(redis.call('HGET', KEYS[7], 'v') or '0')}
end
local current = 0
if ARGV[3] == '1' then
  current = tonumber(redis.call('HGET', KEYS[7], 'v') or '0')
  if current ~= tonumber(ARGV[4]) then
    return {2, 0, current}
  end
end
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], ARGV[1], seq)
redis.call('HSET', KEYS[2], seq, ARGV[2])
redis.call('ZADD', KEYS[3], seq, seq)
redis.call('ZADD', KEYS[5], seq, seq)
redis.call('ZADD', KEYS[6], seq, seq)
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[7], 'v', current + 1, 'd', ARGV[5], 'q', seq, 't', ARGV[6])
  redis.call('SADD', KEYS[8], ARGV[7])
  return {0, seq, current + 1}
end
return {0, seq, 0}
"""

PUT_STATE = """
-- KEYS: 1 state, 2 users.  ARGV: 1 expected version, 2 data, 3 now, 4 seq ('' keeps it), 5 user id
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return {2, current}
end
local seq = ARGV[4]
if seq == '' then
  seq = redis.call('HGET', KEYS[1], 'q') or '0'
end
redis.call('HSET', KEYS[1], 'v', current + 1, 'd', ARGV[2], 'q', seq, 't', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[5])
return {0, current + 1}
"""

RANGE = """
-- KEYS: 1 index (sorted set of seqs), 2 events.  ARGV: 1 after seq, 2 limit (-1: all)
-- Returns seq, json, seq, json, ... in order.
local seqs = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
local out = {}
for _, seq in ipairs(seqs) do
  local doc = redis.call('HGET', KEYS[2], seq)
  if doc then
    out[#out + 1] = seq
    out[#out + 1] = doc
  end
end
return out
"""

FORGET = """
-- KEYS: 1 user's events, 2 events, 3 log, 4 event ids, 5 state, 6 users, 7 promotion counters,
--       8 user's exposure ids, 9 exposures, 10 user's experiment assignments,
--       11 served-page counters
-- ARGV: 1 key prefix, 2 user id, 3 '1' to erase everything, '0' only the events
local seqs = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, seq in ipairs(seqs) do
  local doc = redis.call('HGET', KEYS[2], seq)
  if doc then
    local event = cjson.decode(doc)
    redis.call('HDEL', KEYS[4], event['event_id'])
    redis.call('ZREM', ARGV[1] .. 'i:' .. event['item_id'], seq)
    redis.call('HDEL', KEYS[2], seq)
  end
  redis.call('ZREM', KEYS[3], seq)
end
redis.call('DEL', KEYS[1])
local state = 0
if ARGV[3] == '1' then
  state = redis.call('DEL', KEYS[5])
  redis.call('SREM', KEYS[6], ARGV[2])
  redis.call('DEL', KEYS[7])
  redis.call('DEL', KEYS[10])
  for _, request in ipairs(redis.call('SMEMBERS', KEYS[8])) do
    redis.call('HDEL', KEYS[9], request)
    redis.call('DEL', ARGV[1] .. 'abo:' .. request)
  end
  redis.call('DEL', KEYS[8])
  redis.call('DEL', KEYS[11])
end
return {#seqs, state}
"""

SERVED = """
-- KEYS: 1 served-page counters (hash: s signals, p pages), 2 promotion counters.
-- ARGV: 1 the user's signal count when the page was ranked, 2.. campaign ids promoted on it
local signals = tonumber(ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], 's') or '-1')
if signals == stored then
  redis.call('HINCRBY', KEYS[1], 'p', 1)
elseif signals > stored then
  redis.call('HSET', KEYS[1], 's', signals, 'p', 1)
end
for i = 2, #ARGV do
  redis.call('HINCRBY', KEYS[2], ARGV[i], 1)
end
return 0
"""

RECORD_EXPOSURE = """
-- KEYS: 1 exposures, 2 user's exposure ids, 3 the experiment's counters ('' when none)
-- ARGV: 1 request id, 2 json, 3 counter field (variant .. '\\31' .. 'exposures')
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[1])
  if KEYS[3] ~= '' then
    redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
  end
  return 1
end
return 0
"""

RECORD_OUTCOME = """
-- KEYS: 1 exposures, 2 the exposure's outcome marks.  ARGV: 1 key prefix, 2 request id, 3 outcome
local doc = redis.call('HGET', KEYS[1], ARGV[2])
if not doc then
  return 0
end
if redis.call('SADD', KEYS[2], ARGV[3]) == 0 then
  return 0
end
local exposure = cjson.decode(doc)
local experiment = exposure['experiment']
if experiment and experiment ~= '' then
  redis.call('HINCRBY', ARGV[1] .. 'abc:' .. experiment, exposure['variant'] .. '\\31' .. ARGV[3], 1)
end
return 1
"""

ASSIGN = """
-- KEYS: 1 the user's assignments.  ARGV: 1 experiment, 2 variant.  Returns the stored variant.
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
"""
