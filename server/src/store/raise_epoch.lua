-- Raises the node's stored election epoch; never lowers it. ARGV: epoch. Returns the stored
-- epoch. Epochs are compared and stored as decimal strings: Lua's numbers are doubles, exact
-- only up to 2^53, and Redis would store a large one in exponent form ("1e+17"), which no
-- later start could read back.
local function decimal(s)
  if not string.match(s, '^%d+$') then
    -- Written by an older version in exponent form: read it as the number it stands for.
    local n = tonumber(s)
    if n == nil then
      return nil
    end
    s = string.format('%.0f', n)
  end
  s = (string.gsub(s, '^0+', ''))
  if s == '' then
    return '0'
  end
  return s
end
local current = decimal(redis.call('GET', 'idlab:epoch') or '0') or '0'
local wanted = decimal(ARGV[1])
if wanted == nil or not string.match(wanted, '^%d+$') then
  return redis.error_reply('the epoch to store is not a decimal number')
end
if #wanted > #current or (#wanted == #current and wanted > current) then
  redis.call('SET', 'idlab:epoch', wanted)
  return wanted
end
return current
