-- Join an event's line, or return the place or window the buyer already has.
-- Admits at once when nobody waits and room and budget allow.
-- KEYS: 1 wait (zset user→seq), 2 seen (zset user→last seen ms),
--       3 active (zset user→window end ms), 4 cfg (hash), 5 bucket (hash), 6 seq (counter)
-- ARGV: 1 user, 2 now_ms
-- Returns {0} unknown event | {1, position, waiting} | {2, until_ms}
local user, now = ARGV[1], tonumber(ARGV[2])
local cfg = redis.call('HMGET', KEYS[4], 'rate_per_min', 'max_active', 'window_s', 'paused', 'on_sale_at_ms')
if not cfg[1] then return {0} end

local until_ms = tonumber(redis.call('ZSCORE', KEYS[3], user))
if until_ms and until_ms > now then return {2, until_ms} end

local waiting = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], user) then
  redis.call('ZADD', KEYS[2], 'GT', now, user)
  return {1, redis.call('ZRANK', KEYS[1], user) + 1, waiting}
end

local rate, max_active, window_s = tonumber(cfg[1]), tonumber(cfg[2]), tonumber(cfg[3])
if waiting == 0 then
  -- Same arithmetic as domain::queue::AdmissionBucket::take_budget.
  local cap = math.max(1, rate / 60)
  local b = redis.call('HMGET', KEYS[5], 'tokens', 'updated_ms')
  local tokens, updated = tonumber(b[1]) or cap, tonumber(b[2]) or now
  tokens = math.min(cap, tokens + math.max(0, now - updated) * rate / 60000)
  updated = math.max(now, updated)
  local admitting = cfg[4] == '0' and now >= tonumber(cfg[5])
  if admitting and tokens >= 1 and redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf') < max_active then
    tokens = tokens - 1
    local until_new = now + window_s * 1000
    redis.call('ZADD', KEYS[3], until_new, user)
    redis.call('HSET', KEYS[5], 'tokens', tostring(tokens), 'updated_ms', tostring(updated))
    return {2, until_new}
  end
  redis.call('HSET', KEYS[5], 'tokens', tostring(tokens), 'updated_ms', tostring(updated))
end

local seq = redis.call('INCR', KEYS[6])
redis.call('ZADD', KEYS[1], seq, user)
redis.call('ZADD', KEYS[2], now, user)
return {1, waiting + 1, waiting + 1}
