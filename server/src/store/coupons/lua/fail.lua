-- Mark a reserved coupon as refused by the log, so the buyer's next claim
-- sends it again at once. The unit stays reserved: the claim may be in the
-- log after all. Only a pending state naming this coupon changes.
-- KEYS: 1 claims
-- ARGV: 1 user, 2 coupon id
-- Returns 1 when marked, 0 otherwise
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not state then return 0 end
local claimed, id = string.match(state, '^P|%-?%d+|(%-?%d+)|[^|]*|([^|]+)$')
if id ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'F|' .. claimed .. '|' .. id)
return 1
