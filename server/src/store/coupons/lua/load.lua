-- Make a campaign live from what the database holds: the staged claims
-- hash becomes the claims, with the issued count and the stock, at once,
-- all three expiring at the same instant. A campaign live meanwhile
-- (another loader, or `open`) is left as it is.
-- KEYS: 1 stock, 2 issued, 3 claims, 4 staged claims (hash, may be absent)
-- ARGV: 1 stock ("-1": unlimited), 2 issued, 3 when the keys expire (unix ms)
-- Returns 1 when loaded, 0 when it was live already
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[4])
  return 0
end
redis.call('DEL', KEYS[3])
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RENAME', KEYS[4], KEYS[3])
  redis.call('PEXPIREAT', KEYS[3], ARGV[3])
end
redis.call('SET', KEYS[2], ARGV[2], 'PXAT', ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
return 1
