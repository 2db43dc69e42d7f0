-- Make a campaign live from what the database holds: the staged claims
-- hash becomes the claims, with the issued count and the stock, at once.
-- A campaign loaded meanwhile (another loader) is left as it is.
-- KEYS: 1 stock, 2 issued, 3 claims, 4 staged claims (hash, may be absent)
-- ARGV: 1 stock ("-1": unlimited), 2 issued
-- Returns 1 when loaded, 0 when it was live already
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[4])
  return 0
end
redis.call('DEL', KEYS[3])
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[3])
  redis.call('PERSIST', KEYS[3])
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1])
return 1
