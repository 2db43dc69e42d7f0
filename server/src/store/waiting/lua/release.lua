-- Release the lease only if the caller still holds it.
-- KEYS: 1 lease; ARGV: 1 node, 2 token
local cur = redis.call('HMGET', KEYS[1], 'node', 'token')
if cur[1] == ARGV[1] and cur[2] == ARGV[2] then redis.call('DEL', KEYS[1]) return 1 end
return 0
