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
