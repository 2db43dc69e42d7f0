-- Take or renew the admitter lease. A new holder gets a higher fencing token.
-- KEYS: 1 lease (hash node, token, expires_ms), 2 fence (counter)
-- ARGV: 1 node, 2 now_ms, 3 ttl_ms
-- Returns the token, or false while another node holds the lease.
local node, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cur = redis.call('HMGET', KEYS[1], 'node', 'token', 'expires_ms')
local live = cur[3] and tonumber(cur[3]) > now
if live and cur[1] ~= node then return false end
local token = cur[2]
if not live then token = redis.call('INCR', KEYS[2]) end
redis.call('HSET', KEYS[1], 'node', node, 'token', token, 'expires_ms', now + ttl)
-- Garbage-collect an abandoned lease long after it stopped mattering.
redis.call('PEXPIRE', KEYS[1], ttl * 20)
return tonumber(token)
