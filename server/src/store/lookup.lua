-- One account by login name, read atomically (a rename cannot slip between the two reads).
-- ARGV: the login's index hash, the login. Returns {} or {uuid bytes, fixed record, changing
-- part} (see redis_store.rs for the layout).
local uuid = redis.call('HGET', ARGV[1], ARGV[2])
if not uuid then
  return {}
end
local hash = 'idlab:acct:' .. string.format('%02x%02x', string.byte(uuid, 1, 2))
local parts = redis.call('HMGET', hash, uuid, uuid .. 'l')
return {uuid, parts[1], parts[2]}
