-- Applies one event atomically: checks its precondition, changes the account and the
-- indexes, advances the node's clock and remembers the request id's result.
-- ARGV: kind, clock, request_id, request_ttl_ms, at_ms, uuid, then per kind:
--   create: login, real_name, client_addr, password_hash ('' for none)
--   rename: old, new
--   delete: login
local P = 'idlab:'
local kind, clock, req, ttl, at, uuid = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local prev = redis.call('GET', P .. 'req:' .. req)
if prev then
  return {'dup', prev}
end
local current = tonumber(redis.call('GET', P .. 'clock') or '0')
if clock ~= current + 1 then
  return {'err', 'clock', tostring(current)}
end
local by_login = P .. 'by-login'
local acct = P .. 'acct:' .. uuid
if kind == 'create' then
  local login = ARGV[7]
  if redis.call('HEXISTS', by_login, login) == 1 then
    return {'err', 'login_exists'}
  end
  redis.call('HSET', by_login, login, uuid)
  redis.call('HSET', acct, 'login', login, 'real_name', ARGV[8], 'client_addr', ARGV[9],
    'created_ms', at, 'changed_ms', at)
  if ARGV[10] ~= '' then
    redis.call('HSET', acct, 'password_hash', ARGV[10])
  end
elseif kind == 'rename' then
  local old, new = ARGV[7], ARGV[8]
  if redis.call('HGET', by_login, old) ~= uuid then
    return {'err', 'not_found'}
  end
  if redis.call('HEXISTS', by_login, new) == 1 then
    return {'err', 'new_name_taken'}
  end
  redis.call('HDEL', by_login, old)
  redis.call('HSET', by_login, new, uuid)
  redis.call('HSET', acct, 'login', new, 'changed_ms', at)
elseif kind == 'delete' then
  local login = ARGV[7]
  if redis.call('HGET', by_login, login) ~= uuid then
    return {'err', 'not_found'}
  end
  redis.call('HDEL', by_login, login)
  redis.call('DEL', acct)
else
  return {'err', 'kind'}
end
redis.call('SET', P .. 'clock', clock)
local result = kind .. ' ' .. uuid
redis.call('SET', P .. 'req:' .. req, result, 'PX', ttl)
return {'ok', result}
