-- Records the node's identity at first start; afterwards returns what is recorded.
-- ARGV: cluster, node_id (used only if none is stored yet)
local meta = 'idlab:meta'
local found = redis.call('HGET', meta, 'cluster')
if found and found ~= ARGV[1] then
  return {'foreign', found}
end
redis.call('HSETNX', meta, 'cluster', ARGV[1])
redis.call('HSETNX', meta, 'node_id', ARGV[2])
return {'ok', redis.call('HGET', meta, 'node_id')}
