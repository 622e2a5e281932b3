--[[
taste.lua: the customer's taste vector, a time-decayed sum of the vectors of the articles they
bought, applied effectively once per event.

State (hash KEYS[1]): v = float32 LE blob of S = sum_i 2^(-(t - t_i)/hl) e_i, w = the same sum of
weights, t = the reference event time both are decayed to (the latest event time applied), n =
events applied. An event at time te >= t decays the state to te and adds e; an older event adds
e decayed to t. The taste direction S/|S| (= the decayed mean's) does not depend on "now".

Effectively once, in bounded state:
- hash KEYS[2] `seen` maps each applied event id to `<partition>:<offset>|<event time>`. An event
  found there at its own position is a redelivery ('r'), at another position a second publish of
  the event ('d'). A value without `|<event time>` (written by an older build) is a position: the
  first call that finds no counts (below) stamps such values with t, the newest event time then
  (their events are no newer), and a value still without a time is forgotten at the next prune.
- field `o:<partition>` of the taste hash: the highest offset applied for this customer from that
  partition. A customer's events arrive in offset order per partition (the key is the customer),
  so an event at or below it was processed before: 'r' when its `seen` entry is missing
  (forgotten) or at its position, 'd' when at another position. Its entry missing although its
  event time is within the horizon of t (so it was never forgotten) means the topic was recreated
  while this namespace kept the old state: refused with REC_OFFSET_REGRESSION, before the call
  writes any event.
- entries whose event time is before the horizon's cut of t (horizon.lua: the horizon before the
  quarter-horizon step holding t) are forgotten. Field `seen` of the taste hash counts the entries
  of the `seen` hash, `seen_at_prune` the count the last prune left; when `seen` reaches
  2 * seen_at_prune + 32 the hash is read once and its old entries deleted, so the cost per event
  stays O(1) amortised and the hash holds fewer than twice the events of about one horizon, plus
  32. The prune runs at the event that reaches the threshold, so the state depends on the events
  and their order, never on how they were batched.
- a new event before the cut of t is late ('l', skipped): its id may have been forgotten, so a
  second publish could not be told from a new event. The customer script refuses the same events
  with the same cut, and the purchases group dead-letters them. Every applied event from the cut
  on is still in `seen`, so nothing is counted twice at any age.

KEYS: 1 taste hash, 2 seen hash
ARGV: 1 decay rate (ln 2 / half-life, per ms), 2 dim, 3 horizon (ms), 4 offset guard: 1, or 0 to
      ignore it (a rebuild replaying the topic from the start while the live consumer, further on,
      may already have raised it), 5 event count, then per event:
      event_id, position (`<partition>:<offset>`), event_time, vector (float32 LE blob of dim
      values, '' = none)
Returns one status per event: 'n' applied, 'x' applied without a vector (article not embedded),
'r' redelivery (processed before at this position), 'd' duplicate (the same event id at another
position), 'l' late (before the horizon's cut of the newest event time applied before it).
]]
--- @include "fmt"
--- @include "chunks"
--- @include "horizon"

local taste, seen = KEYS[1], KEYS[2]
local rate = tonumber(ARGV[1])
local dim = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local check_offsets = ARGV[4] == '1'
local count = tonumber(ARGV[5])
local FIRST, WIDTH = 6, 4 -- ARGV index of the first event, fields per event

local state = redis.call('HMGET', taste, 'v', 'w', 't', 'n', 'seen', 'seen_at_prune')
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
local seen_at_prune = tonumber(state[6]) or 0
local seen_n = tonumber(state[5])
local counted = false -- the counts are new: written even if no event is applied
if seen_n == nil then
  -- No count yet: a new customer, or a guard written by an older build (positions without event
  -- times). Those events were applied at or before t, so each gets t as its time (once): it is
  -- kept a horizon after t, and an event missing below the offset guard within the horizon can
  -- only be a recreated topic's.
  local all = redis.call('HGETALL', seen)
  if t ~= nil then
    local stamped = {}
    for i = 1, #all, 2 do
      if not string.find(all[i + 1], '|', 1, true) then
        stamped[#stamped + 1] = all[i]
        stamped[#stamped + 1] = all[i + 1] .. '|' .. state[3]
      end
    end
    call_chunked('HSET', seen, stamped)
  end
  seen_n = #all / 2
  counted = #all > 0
end
local changed = false
local out = {}

-- The batch's view of `seen`, written at the end: entries added, stored entries dropped.
local added, dropped = {}, {}
local function seen_value(id)
  local v = added[id]
  if v ~= nil then return v end
  if dropped[id] then return false end
  return redis.call('HGET', seen, id)
end
local function position_of(value) return string.match(value, '^[^|]*') end
-- Forgotten by a prune at `cutoff`: older than it, or of unknown time.
local function is_old(value, cutoff)
  local te = tonumber(string.match(value, '|([^|]*)$'))
  return te == nil or te < cutoff
end

-- Drop the entries before the horizon's cut of t (stored and added by this batch).
local function prune()
  local cutoff = horizon_cut(t, horizon)
  local kept = 0
  local all = redis.call('HGETALL', seen)
  for i = 1, #all, 2 do
    local id = all[i]
    if added[id] == nil and not dropped[id] then
      if is_old(all[i + 1], cutoff) then dropped[id] = true else kept = kept + 1 end
    end
  end
  for id, v in pairs(added) do
    if is_old(v, cutoff) then added[id] = nil else kept = kept + 1 end
  end
  seen_n, seen_at_prune = kept, kept
end

-- The offset guard per partition, read once, raised as events are applied.
local guards, guards_changed = {}, {}
local function guard_of(partition)
  if guards[partition] == nil then
    guards[partition] = tonumber(redis.call('HGET', taste, 'o:' .. partition)) or -1
  end
  return guards[partition]
end

for k = 0, count - 1 do
  local base = FIRST + k * WIDTH
  local id, position, te_arg, vec = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local te = tonumber(te_arg)
  local partition, o = string.match(position, '^(.*):(%d+)$')
  o = tonumber(o)
  local prev = seen_value(id)
  if check_offsets and o <= guard_of(partition) then
    if not prev then
      if t ~= nil and te >= t - horizon then
        return redis.error_reply('REC_OFFSET_REGRESSION: offset ' .. o .. ' of partition ' .. partition ..
          ' is at or below the highest this customer applied (' .. guard_of(partition) .. '), yet its ' ..
          'event ' .. id .. ' is unknown though within the dedup horizon: the topic was recreated while ' ..
          'this Redis namespace kept the old state; clear the namespace (or use a new ' ..
          'REDIS_NAMESPACE) and reprocess')
      end
      out[#out + 1] = 'r'
    else
      out[#out + 1] = (position_of(prev) == position) and 'r' or 'd'
    end
  elseif prev and position_of(prev) == position then
    out[#out + 1] = 'r'
  elseif t ~= nil and te < horizon_cut(t, horizon) then
    out[#out + 1] = 'l' -- whether or not a first copy is still in `seen`, as customer.lua
  elseif prev then
    out[#out + 1] = 'd'
  else
    added[id] = position .. '|' .. te_arg
    seen_n = seen_n + 1
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
    if seen_n >= 2 * seen_at_prune + 32 then prune() end
    if o > guard_of(partition) then
      guards[partition] = o
      guards_changed[partition] = true
    end
  end
end

-- Writes, after every check passed.
local del = {}
for id in pairs(dropped) do del[#del + 1] = id end
call_chunked('HDEL', seen, del)
local add = {}
for id, v in pairs(added) do
  add[#add + 1] = id
  add[#add + 1] = v
end
call_chunked('HSET', seen, add)
local fields = {}
if changed then
  local parts = {}
  for i = 1, dim do parts[i] = struct.pack('<f', s[i]) end
  fields = { 'v', table.concat(parts), 'w', fmt(w), 't', fmt(t), 'n', n }
end
if changed or counted then
  fields[#fields + 1] = 'seen'
  fields[#fields + 1] = seen_n
  fields[#fields + 1] = 'seen_at_prune'
  fields[#fields + 1] = seen_at_prune
end
for partition in pairs(guards_changed) do
  fields[#fields + 1] = 'o:' .. partition
  fields[#fields + 1] = guards[partition]
end
if #fields > 0 then redis.call('HSET', taste, unpack(fields)) end
return out
