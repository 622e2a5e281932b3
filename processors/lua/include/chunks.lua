-- call_chunked(cmd, key, values): redis.call(cmd, key, v1, v2, ...) over `values` in chunks of at
-- most 4000 (Lua's unpack is bounded by its C stack, about 8000 values, so a long list must not go
-- in one call). 4000 is even, so (field, value) pairs stay together. Returns the sum of the
-- integer replies (e.g. the fields HDEL removed); nothing is called for an empty list.
local function call_chunked(cmd, key, values)
  local total = 0
  for i = 1, #values, 4000 do
    local r = redis.call(cmd, key, unpack(values, i, math.min(i + 3999, #values)))
    if type(r) == 'number' then total = total + r end
  end
  return total
end

-- hmget_chunked(key, fields): HMGET of a list of any length, in chunks; the values, in order.
local function hmget_chunked(key, fields)
  local out = {}
  for i = 1, #fields, 4000 do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + 3999, #fields)))
    for j = 1, #part do out[#out + 1] = part[j] end
  end
  return out
end

-- hset_chunked(key, flat): HSET of the field / value pairs of a flat list, in chunks.
local function hset_chunked(key, flat) call_chunked('HSET', key, flat) end
