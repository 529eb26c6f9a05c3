-- Runs a batch of writes only if what it was decided on still holds, atomically.
-- ARGV: the number of checks, then per check: op, key, field, value, where op is
--   'get'   (GET key equals value; '' for a missing key),
--   'hfree' (the hash key has no field), or
--   'heq'   (HGET key field equals value);
-- then the commands: per command its argument count and its arguments.
-- Returns 1 if every check held and the commands ran, 0 (nothing written) otherwise.
local checks = tonumber(ARGV[1])
local i = 2
for _ = 1, checks do
  local op, key, field, value = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local holds
  if op == 'get' then
    holds = (redis.call('GET', key) or '') == value
  elseif op == 'hfree' then
    holds = redis.call('HEXISTS', key, field) == 0
  elseif op == 'heq' then
    holds = redis.call('HGET', key, field) == value
  else
    return redis.error_reply('unknown check ' .. tostring(op))
  end
  if not holds then
    return 0
  end
end
while i <= #ARGV do
  local count = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + count))
  i = i + count + 1
end
return 1
