-- One admitter step, refused unless the caller holds the current lease.
-- KEYS: 1 wait, 2 seen, 3 active, 4 cfg, 5 bucket, 6 lease (hash)
-- ARGV: 1 lease token, 2 now_ms, 3 max_batch
-- Returns {0} when fenced, else {1, expired, dropped, admitted, until_ms, waiting, active}
local token, now, max_batch = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local lease = redis.call('HMGET', KEYS[6], 'token', 'expires_ms')
if lease[1] ~= token or tonumber(lease[2]) <= now then return {0} end
local cfg = redis.call('HMGET', KEYS[4], 'rate_per_min', 'max_active', 'window_s', 'paused', 'on_sale_at_ms', 'grace_s')
if not cfg[1] then return {1, {}, {}, {}, 0, 0, 0} end
local rate, max_active, window_s, grace_s = tonumber(cfg[1]), tonumber(cfg[2]), tonumber(cfg[3]), tonumber(cfg[6])

local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, max_batch)
for _, u in ipairs(expired) do redis.call('ZREM', KEYS[3], u) end

-- Same rule as domain::queue::ghost_cutoff (grace plus 1 s of resolution).
local cutoff = now - grace_s * 1000 - 1000
local dropped = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. cutoff, 'LIMIT', 0, max_batch)
for _, u in ipairs(dropped) do
  redis.call('ZREM', KEYS[1], u)
  redis.call('ZREM', KEYS[2], u)
end

-- Same arithmetic as domain::queue::AdmissionBucket::take_budget.
local cap = math.max(1, rate / 60)
local b = redis.call('HMGET', KEYS[5], 'tokens', 'updated_ms')
local tokens, updated = tonumber(b[1]) or cap, tonumber(b[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - updated) * rate / 60000)
updated = math.max(now, updated)
local waiting = redis.call('ZCARD', KEYS[1])
local active = redis.call('ZCARD', KEYS[3])
local n = 0
if cfg[4] == '0' and now >= tonumber(cfg[5]) then
  n = math.min(math.floor(tokens), math.max(0, max_active - active), waiting, max_batch)
end
local admitted = {}
local until_ms = now + window_s * 1000
if n > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], n)
  for i = 1, #popped, 2 do
    local u = popped[i]
    redis.call('ZREM', KEYS[2], u)
    redis.call('ZADD', KEYS[3], until_ms, u)
    admitted[#admitted + 1] = u
  end
  tokens = tokens - #admitted
end
redis.call('HSET', KEYS[5], 'tokens', tostring(tokens), 'updated_ms', tostring(updated))
return {1, expired, dropped, admitted, until_ms, waiting - #admitted, active + #admitted}
