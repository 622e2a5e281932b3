-- Commands whose arguments come from a list of any length, sent in chunks: Lua's unpack fails
-- past a few thousand values (LUAI_MAXCSTACK), so at most CHUNK values go in one call.
local CHUNK = 4000

-- HMGET of `fields` (a list of any length): the values, in order.
local function hmget_chunked(key, fields)
  local out = {}
  for i = 1, #fields, CHUNK do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + CHUNK - 1, #fields)))
    for j = 1, #part do out[#out + 1] = part[j] end
  end
  return out
end

-- `command key a1 a2 ...` with the arguments of `flat` (pairs kept together: CHUNK is even);
-- nothing when `flat` is empty.
local function call_chunked(command, key, flat)
  for i = 1, #flat, CHUNK do
    redis.call(command, key, unpack(flat, i, math.min(i + CHUNK - 1, #flat)))
  end
end

-- HSET of field / value pairs (a flat list).
local function hset_chunked(key, flat) call_chunked('HSET', key, flat) end
