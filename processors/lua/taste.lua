--[[
taste.lua: the customer's taste vector, a time-decayed sum of the vectors of the articles they
bought, applied effectively once per event (the event-id guard, as in customer.lua).

State (hash KEYS[1]): v = float32 LE blob of S = sum_i 2^(-(t - t_i)/hl) e_i, w = the same sum of
weights, t = the reference event time both are decayed to (the latest event time applied), n =
events applied. An event at time te >= t decays the state to te and adds e; an older event adds
e decayed to t. The taste direction S/|S| (= the decayed mean's) does not depend on "now".

KEYS: 1 taste hash, 2 seen hash (event_id -> "<partition>:<offset>")
ARGV: 1 decay rate (ln 2 / half-life, per ms), 2 dim, 3 event count, then per event:
      event_id, position, event_time, vector (float32 LE blob of dim values, '' = none)
Returns one status per event: 'n' applied, 'x' applied without a vector (article not embedded),
'r' redelivery (same position), 'd' duplicate (same event id at another position).
]]
--- @include "fmt"

local rate = tonumber(ARGV[1])
local dim = tonumber(ARGV[2])
local count = tonumber(ARGV[3])

local state = redis.call('HMGET', KEYS[1], 'v', 'w', 't', 'n')
local s = {}
local blob = state[1]
if blob and #blob == dim * 4 then
  local pos = 1
  for i = 1, dim do
    s[i], pos = struct.unpack('<f', blob, pos)
  end
else
  for i = 1, dim do s[i] = 0 end
end
local w = tonumber(state[2]) or 0
local t = tonumber(state[3])
local n = tonumber(state[4]) or 0
local changed = false
local out = {}

for k = 0, count - 1 do
  local base = 4 + k * 4
  local id, position, te, vec = ARGV[base], ARGV[base + 1], tonumber(ARGV[base + 2]), ARGV[base + 3]
  local prev = redis.call('HGET', KEYS[2], id)
  if prev then
    out[#out + 1] = (prev == position) and 'r' or 'd'
  else
    redis.call('HSET', KEYS[2], id, position)
    n = n + 1
    changed = true
    if vec == '' or #vec ~= dim * 4 then
      out[#out + 1] = 'x'
      -- The reference time moves to the latest event time, so the state decays with it (as for
      -- an event with a vector): S and w stay decayed to t whatever the order of the events.
      if t == nil then
        t = te
      elseif te > t then
        if w > 0 then
          local f = math.exp(-rate * (te - t))
          for i = 1, dim do s[i] = s[i] * f end
          w = w * f
        end
        t = te
      end
    else
      local g = 1
      if t == nil then
        t = te
      elseif te >= t then
        local f = math.exp(-rate * (te - t))
        for i = 1, dim do s[i] = s[i] * f end
        w = w * f
        t = te
      else
        g = math.exp(-rate * (t - te))
      end
      local pos = 1
      local x
      for i = 1, dim do
        x, pos = struct.unpack('<f', vec, pos)
        s[i] = s[i] + g * x
      end
      w = w + g
      out[#out + 1] = 'n'
    end
  end
end

if changed then
  local parts = {}
  for i = 1, dim do parts[i] = struct.pack('<f', s[i]) end
  redis.call('HSET', KEYS[1], 'v', table.concat(parts), 'w', fmt(w), 't', fmt(t), 'n', n)
end
return out
