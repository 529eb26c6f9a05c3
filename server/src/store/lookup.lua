-- One account by login name, read atomically (a rename cannot slip between the two reads).
-- ARGV: login. Returns {} or {uuid, field, value, ...}.
local uuid = redis.call('HGET', 'idlab:by-login', ARGV[1])
if not uuid then
  return {}
end
local fields = redis.call('HGETALL', 'idlab:acct:' .. uuid)
table.insert(fields, 1, uuid)
return fields
