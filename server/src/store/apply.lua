-- Applies one event atomically: checks its precondition, changes the account and the
-- indexes, advances the node's clock, remembers the request id's result and appends the event
-- (with the time it was applied here) to the bounded event log.
-- ARGV: 'assign' (the coordinator: the clock is the next one, and a known request id returns
--       its first result) or the expected clock (a replica: it must be the next one);
--       the event as JSON (see event.rs); the request-id TTL in ms; the event log's length.
local P = 'idlab:'
local ev = cjson.decode(ARGV[2])
local ch = ev.change
local req = P .. 'req:' .. ev.request_id
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
local acct = P .. 'acct:' .. ch.uuid
if ch.kind == 'create' then
  if redis.call('HEXISTS', by_login, ch.login) == 1 then
    return {'err', 'login_exists'}
  end
  redis.call('HSET', by_login, ch.login, ch.uuid)
  redis.call('HSET', acct, 'login', ch.login, 'real_name', ch.real_name,
    'client_addr', ch.client_addr, 'created_ms', ev.at_ms, 'changed_ms', ev.at_ms)
  if ch.password_hash ~= nil and ch.password_hash ~= cjson.null then
    redis.call('HSET', acct, 'password_hash', ch.password_hash)
  end
elseif ch.kind == 'rename' then
  if redis.call('HGET', by_login, ch.old) ~= ch.uuid then
    return {'err', 'not_found'}
  end
  if redis.call('HEXISTS', by_login, ch.new) == 1 then
    return {'err', 'new_name_taken'}
  end
  redis.call('HDEL', by_login, ch.old)
  redis.call('HSET', by_login, ch.new, ch.uuid)
  redis.call('HSET', acct, 'login', ch.new, 'changed_ms', ev.at_ms)
elseif ch.kind == 'delete' then
  if redis.call('HGET', by_login, ch.login) ~= ch.uuid then
    return {'err', 'not_found'}
  end
  redis.call('HDEL', by_login, ch.login)
  redis.call('DEL', acct)
else
  return {'err', 'kind'}
end
redis.call('SET', P .. 'clock', clock)
local result = ch.kind .. ' ' .. ch.uuid
redis.call('SET', req, result, 'PX', ARGV[3])
ev.clock = clock
local now = redis.call('TIME')
ev.applied_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local log = P .. 'events'
redis.call('ZADD', log, clock, cjson.encode(ev))
local excess = redis.call('ZCARD', log) - tonumber(ARGV[4])
if excess > 0 then
  redis.call('ZREMRANGEBYRANK', log, 0, excess - 1)
end
return {'ok', result, tostring(clock)}
