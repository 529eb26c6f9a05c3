-- Raises the node's stored election epoch; never lowers it. ARGV: epoch. Returns the stored epoch.
local current = tonumber(redis.call('GET', 'idlab:epoch') or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then
  redis.call('SET', 'idlab:epoch', wanted)
  return wanted
end
return current
