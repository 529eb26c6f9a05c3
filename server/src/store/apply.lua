-- Applies one event atomically: checks its precondition, changes the account and the
-- indexes, advances the node's clock, remembers the request id's result and appends the event
-- to the bounded event log as "<clock>|<applied ms>|<event JSON>" (the JSON is made by the
-- node, with its clock left out: the clock is decided here).
-- ARGV: 'assign' (the coordinator: the clock is the next one, and a known request id returns
--       its first result) or the expected clock (a replica: it must be the next one);
--       the event's JSON; the request-id TTL in ms; the event log's length;
--       kind; uuid; request id; at (ms); then per kind:
--       create: login, real_name, client_addr, password_hash ('' for none)
--       rename: old, new
--       delete: login
local P = 'idlab:'
local kind, uuid, request_id, at = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local req = P .. 'req:' .. request_id
local assign = ARGV[1] == 'assign'
if assign then
  local prev = redis.call('GET', req)
  if prev then
    return {'dup', prev}
  end
end
local current = tonumber(redis.call('GET', P .. 'clock') or '0')
local clock = current + 1
if not assign and tonumber(ARGV[1]) ~= clock then
  return {'err', 'clock', tostring(current)}
end
local by_login = P .. 'by-login'
local acct = P .. 'acct:' .. uuid
if kind == 'create' then
  local login = ARGV[9]
  if redis.call('HEXISTS', by_login, login) == 1 then
    return {'err', 'login_exists'}
  end
  redis.call('HSET', by_login, login, uuid)
  redis.call('HSET', acct, 'login', login, 'real_name', ARGV[10], 'client_addr', ARGV[11],
    'created_ms', at, 'changed_ms', at)
  if ARGV[12] ~= '' then
    redis.call('HSET', acct, 'password_hash', ARGV[12])
  end
elseif kind == 'rename' then
  local old, new = ARGV[9], ARGV[10]
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
  local login = ARGV[9]
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
redis.call('SET', req, result, 'PX', ARGV[3])
local now = redis.call('TIME')
local applied_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local log = P .. 'events'
redis.call('ZADD', log, clock, clock .. '|' .. applied_ms .. '|' .. ARGV[2])
-- Trim in batches: one ZCARD per event is cheap, a removal every 1024 events cheaper still.
if clock % 1024 == 0 then
  local excess = redis.call('ZCARD', log) - tonumber(ARGV[4])
  if excess > 0 then
    redis.call('ZREMRANGEBYRANK', log, 0, excess - 1)
  end
end
return {'ok', result, tostring(clock)}
