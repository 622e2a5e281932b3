--[[
customer.lua: apply a batch of one customer's purchase events to the customer's state, atomically.
Every key is in the customer's slot {u:<id>}. The batch costs a fixed number of commands whatever
its size: one read and one write of the `state` hash, the guard, `recent` and the window.

State: hash `state` holds, by field prefix: the stats (`n`, `units`, `spend`, `price_sum`, `first`,
`last`), events per sales channel (`ch:<id>`), log-space decayed affinities (`f:<kind>:<value>`,
`f:_total`), items (`a:<article>` -> `n|last|L|units|first|lu`, `p:<product code>` -> `n|last|L`:
events, latest event time, log-space decayed count at the items rate, units bought, earliest event
time, units bought at the latest event time; the article id stands in for a missing product code),
and the guards' bookkeeping (`o:<partition>`, `smin`, `in`). Counting, min, max and log-add commute,
and so does `lu` (the units of the events at the latest time), so the order of events does not
matter.

Idempotence: `state` field `o:<partition>` keeps the highest offset applied from that partition;
hash `seen` maps each event id applied within the dedup horizon to `<partition>:<offset>|<event
time>`. `seen` forgets events older than the customer's newest event time minus `horizon`, rounded
down to a quarter-horizon step (horizon.lua: pruned at most once a step, and what it keeps does not
depend on how events were batched; `smin` is the earliest time it holds). An event
- seen at its own position is a redelivery (status 'p': not re-applied here, but returned so the
  other slots can complete it);
- at or below its partition's offset: seen at another position, a duplicate publish ('d': skipped
  everywhere); unseen, a redelivery whose entry was forgotten ('p'), unless it is young enough
  that its id cannot have been forgotten: then the topic was recreated under a store that
  remembers the old one, refused loudly (REC_OFFSET_REGRESSION);
- past its partition's offset and before the cut of the customer's newest event time (that of
  the events applied before it) is late ('l': skipped everywhere, the processor dead-letters it),
  whether or not `seen` still holds a first copy: its id may have been forgotten, so a second
  publish could not be told from a new event. Kept in `seen` as `<position>|<time>|l`, its time
  the batch's newest, so that a redelivery of its batch finds it late again;
- else seen at another position, a duplicate publish ('d'); else it is applied ('n').
Every event applied from the cut on is in `seen`, so nothing is counted twice at any age.

Bounds: at most `items cap` articles and as many products: once there are more than 2.5 x the cap
items (`in` counts them), each kind is cut to the cap, those with the lowest decayed count going;
`recent` keeps the last `recent cap` purchases; the window, two windows behind the newest event.

Co-purchase partners of an event are the customer's other purchases within +-window that were
applied before it (lower offset), nearest in time first, at most `fanout`. They are computed from
one read of the window around the whole batch, and recomputed the same way on a redelivery,
because the window members carry their offsets.

KEYS: 1 seen, 2 state, 3 recent, 4 window
ARGV: 1 epoch ms, 2 affinity rate (per ms), 3 recent cap, 4 window ms, 5 fan-out, 6 items rate,
      7 dedup horizon ms, 8 items cap, 9 events, then per event 9 fields: event_id, article_id, t,
      price, qty, channel, position (`<partition>:<offset>`), affinity fields (`f:<kind>:<value>`
      joined by \31, may be empty), product code (may be empty)
Returns per event {status, partners} with partners as `article\31t` joined by \30; for a late event
{'l', the horizon's cut it is older than}.
]]
local seen, state, recent, win = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local epoch = tonumber(ARGV[1])
local lambda = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local fanout = tonumber(ARGV[5])
local irate = tonumber(ARGV[6])
local horizon = tonumber(ARGV[7])
local items_cap = tonumber(ARGV[8])
local n = tonumber(ARGV[9])
local FIRST, WIDTH = 10, 9 -- ARGV index of the first event, fields per event

--- @include "fmt"
--- @include "logadd"
--- @include "chunks"
--- @include "horizon"

-- The batch's events, parsed once.
local ev = {}
local partitions = {}
local tmin, tmax
for i = 0, n - 1 do
  local b = FIRST + i * WIDTH
  local position = ARGV[b + 6]
  local partition, o = string.match(position, '^(.*):(%d+)$')
  local e = {
    id = ARGV[b], article = ARGV[b + 1], t = tonumber(ARGV[b + 2]), price = tonumber(ARGV[b + 3]),
    qty = tonumber(ARGV[b + 4]), channel = ARGV[b + 5], position = position, partition = partition,
    o = tonumber(o), cats = ARGV[b + 7], product = ARGV[b + 8],
  }
  if e.product == '' then e.product = e.article end
  ev[#ev + 1] = e
  partitions[partition] = true
  if tmin == nil or e.t < tmin then tmin = e.t end
  if tmax == nil or e.t > tmax then tmax = e.t end
end

-- One read of every `state` field the batch touches: the stats, the guard's bookkeeping, the
-- channel counts, affinities and items of its events.
local names = { 'n', 'units', 'spend', 'price_sum', 'first', 'last', 'smin', 'in' }
local wanted = {}
for _, name in ipairs(names) do wanted[name] = true end
local function want(field)
  if wanted[field] == nil then
    wanted[field] = true
    names[#names + 1] = field
  end
end
for partition in pairs(partitions) do want('o:' .. partition) end
want('f:_total')
for _, e in ipairs(ev) do
  want('ch:' .. e.channel)
  for field in string.gmatch(e.cats, '([^\31]+)') do want(field) end
  want('a:' .. e.article)
  want('p:' .. e.product)
end
local cur = hmget_chunked(state, names)
local s = {}   -- stats, counts and log-space sums by field
local item_val = {} -- `a:` / `p:` field -> { n, last, L, units, first, lu } (`p:` the first three)
for i, name in ipairs(names) do
  local v = cur[i]
  local kind = string.sub(name, 1, 2)
  if kind == 'a:' or kind == 'p:' then
    if v then
      local cn, cl, cL, cu, cf, clu = string.match(v, '^([^|]*)|([^|]*)|([^|]*)|?([^|]*)|?([^|]*)|?(.*)$')
      item_val[name] = { tonumber(cn), tonumber(cl), tonumber(cL), tonumber(cu), tonumber(cf), tonumber(clu) }
    end
  else
    s[name] = tonumber(v)
  end
end
local smin, item_count = s.smin, s['in'] or 0
local applied_to = {}
for partition in pairs(partitions) do applied_to[partition] = s['o:' .. partition] or -1 end

local ids = {}
for i, e in ipairs(ev) do ids[i] = e.id end
local priors = hmget_chunked(seen, ids)

-- Window members around the batch, { member, offset, article, time }, sorted as Redis orders them
-- (time, then member); the batch's applied events join them before partners are computed.
local members = {}
local flat = redis.call('ZRANGEBYSCORE', win, tmin - window, tmax + window, 'WITHSCORES')
local in_window = {}
for j = 1, #flat, 2 do
  local mo, pa = string.match(flat[j], '^(%d+)|[^|]*|(.*)$')
  members[#members + 1] = { flat[j], tonumber(mo), pa, tonumber(flat[j + 1]) }
  in_window[flat[j]] = true
end

-- Partners of an event at time t, offset o: window members applied before it (lower offset),
-- other articles, within +-window; from each side of t the nearest `limit` such members, then
-- the nearest `fanout` of those (ties by member).
local limit = 2 * fanout + 8
local function partners_of(t, o, article)
  local lo, hi = 1, #members + 1 -- first index whose time is > t
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if members[mid][4] > t then hi = mid else lo = mid + 1 end
  end
  local found = {}
  local function take(m)
    if m[2] < o and m[3] ~= article then
      found[#found + 1] = { math.abs(m[4] - t), m[1], m[3], m[4] }
      return 1
    end
    return 0
  end
  local got, j = 0, lo - 1
  while j >= 1 and got < limit and members[j][4] >= t - window do
    got = got + take(members[j])
    j = j - 1
  end
  got, j = 0, lo
  while j <= #members and got < limit and members[j][4] <= t + window do
    got = got + take(members[j])
    j = j + 1
  end
  table.sort(found, function(p, q)
    if p[1] ~= q[1] then return p[1] < q[1] end
    return p[2] < q[2]
  end)
  local chosen = {}
  for k = 1, math.min(fanout, #found) do
    chosen[#chosen + 1] = found[k][3] .. '\31' .. fmt(found[k][4])
  end
  return table.concat(chosen, '\30')
end

local function position_of(prior) return string.match(prior, '^([^|]*)') end
local function is_late_entry(prior) return string.sub(prior, -2) == '|l' end

-- Pass 1: each event's status, and the state of the events applied now.
local status = {}
local late_cut = {} -- per late event, the cut it is older than
local applied_now = {}
local recent_add, win_add, seen_add = {}, {}, {}
local touched = {} -- `state` fields to write (besides the stats)
local newest = s.last
-- A late event's entry is kept as if it were as new as the batch's newest event: the guard keeps
-- it while a redelivery of this batch can come.
local late_kept = math.max(newest or tmax, tmax)
for i, e in ipairs(ev) do
  local prior = applied_now[e.id] or priors[i]
  local prior_pos = prior and position_of(prior)
  if prior_pos == e.position then
    status[i] = is_late_entry(prior) and 'l' or 'p'
  elseif prior and e.o <= applied_to[e.partition] then
    status[i] = 'd'
  elseif e.o <= applied_to[e.partition] then
    -- Processed before and forgotten since (older than the horizon), or a recreated topic.
    if newest ~= nil and e.t >= horizon_cut(newest, horizon) then
      return redis.error_reply('REC_OFFSET_REGRESSION: offset ' .. e.o .. ' of partition ' .. e.partition ..
        ' was applied to this customer before, yet its event is unknown: the topic was recreated while this ' ..
        'Redis namespace kept the old state; clear the namespace (or use a new REDIS_NAMESPACE) and reprocess')
    end
    status[i] = 'p'
  elseif s.last ~= nil and e.t < horizon_cut(s.last, horizon) then
    -- Late, whether or not the guard still holds a first copy (so what is dead-lettered does not
    -- depend on the batches). Recorded for a redelivery of this batch, unless that would replace
    -- a first copy's entry (its redelivery then finds this one a duplicate: skipped all the same).
    status[i] = 'l'
    late_cut[i] = horizon_cut(s.last, horizon)
    if not prior then
      seen_add[#seen_add + 1] = e.id
      seen_add[#seen_add + 1] = e.position .. '|' .. fmt(late_kept) .. '|l'
      if smin == nil or late_kept < smin then smin = late_kept end
      applied_now[e.id] = e.position -- a second copy later in this batch is late too
    end
  elseif prior then
    status[i] = 'd'
  else
    status[i] = 'n'
    s.n = (s.n or 0) + 1
    s.units = (s.units or 0) + e.qty
    s.spend = (s.spend or 0) + e.price * e.qty
    s.price_sum = (s.price_sum or 0) + e.price
    if s.first == nil or e.t < s.first then s.first = e.t end
    if s.last == nil or e.t > s.last then s.last = e.t end
    local ch = 'ch:' .. e.channel
    s[ch] = (s[ch] or 0) + 1
    touched[ch] = true

    recent_add[#recent_add + 1] = e.t
    recent_add[#recent_add + 1] = fmt(e.t) .. '|' .. e.id .. '|' .. e.article .. '|' .. fmt(e.price) .. '|' ..
        e.channel .. '|' .. e.qty

    local x = lambda * (e.t - epoch)
    s['f:_total'] = logadd(s['f:_total'], x)
    touched['f:_total'] = true
    for field in string.gmatch(e.cats, '([^\31]+)') do
      s[field] = logadd(s[field], x)
      touched[field] = true
    end
    local ix = irate * (e.t - epoch)
    local a_prev = item_val['a:' .. e.article]
    local prev_last = a_prev and a_prev[2]
    for _, field in ipairs({ 'a:' .. e.article, 'p:' .. e.product }) do
      local v = item_val[field]
      if v == nil then
        v = { 0, e.t, nil, nil }
        item_val[field] = v
        item_count = item_count + 1
      end
      v[1] = v[1] + 1
      v[2] = math.max(v[2], e.t)
      v[3] = logadd(v[3], ix)
      touched[field] = true
    end
    -- The article's units, earliest time, and units at its latest time: an event after the latest
    -- starts them again, one at it adds to them, an earlier one leaves them.
    local a = item_val['a:' .. e.article]
    a[4] = (a[4] or 0) + e.qty
    if a[5] == nil or e.t < a[5] then a[5] = e.t end
    if prev_last == nil or e.t > prev_last then
      a[6] = e.qty
    elseif e.t == prev_last then
      a[6] = (a[6] or 0) + e.qty
    end

    local member = e.o .. '|' .. e.id .. '|' .. e.article
    if not in_window[member] then
      in_window[member] = true
      members[#members + 1] = { member, e.o, e.article, e.t }
      win_add[#win_add + 1] = e.t
      win_add[#win_add + 1] = member
    end
    seen_add[#seen_add + 1] = e.id
    seen_add[#seen_add + 1] = e.position .. '|' .. fmt(e.t)
    if smin == nil or e.t < smin then smin = e.t end
    applied_now[e.id] = e.position -- a second copy later in this batch is a duplicate
  end
  if e.o > applied_to[e.partition] then applied_to[e.partition] = e.o end
end

-- Pass 2: partners of the events applied now and of redeliveries.
if #win_add > 0 then
  table.sort(members, function(p, q)
    if p[4] ~= q[4] then return p[4] < q[4] end
    return p[1] < q[1]
  end)
end
local result = {}
for i, e in ipairs(ev) do
  local st = status[i]
  if st == 'l' then
    result[i] = { st, fmt(late_cut[i] or horizon_cut(s.last, horizon)) }
  else
    result[i] = { st, st == 'd' and '' or partners_of(e.t, e.o, e.article) }
  end
end

-- Keep the `cap` articles (`a:`) and the `cap` products (`p:`) of the state with the highest
-- decayed count (L, log space: comparable across entries); drop the others. Returns the entries
-- left.
local function cap_items(state_key, cap)
  local all = redis.call('HGETALL', state_key)
  local kinds = { ['a:'] = {}, ['p:'] = {} } -- by field prefix (`price_sum` is a stat)
  for j = 1, #all, 2 do
    local kind = string.sub(all[j], 1, 2)
    local L = tonumber(string.match(all[j + 1], '^[^|]*|[^|]*|([^|]*)')) or -math.huge
    local list = kinds[kind]
    if list then list[#list + 1] = { all[j], L } end
  end
  local drop, left = {}, 0
  for _, list in pairs(kinds) do
    table.sort(list, function(p, q)
      if p[2] ~= q[2] then return p[2] > q[2] end
      return p[1] < q[1]
    end)
    for k = cap + 1, #list do
      drop[#drop + 1] = list[k][1]
    end
    left = left + math.min(cap, #list)
  end
  call_chunked('HDEL', state_key, drop)
  return left
end

-- Forget the guard entries of events before `cut`; returns the earliest event time left (nil
-- when none).
local function prune_seen(seen_key, cut)
  local all = redis.call('HGETALL', seen_key)
  local drop, earliest = {}, nil
  for j = 1, #all, 2 do
    local t = tonumber(string.match(all[j + 1], '^[^|]*|([^|]*)'))
    if t < cut then
      drop[#drop + 1] = all[j]
    elseif earliest == nil or t < earliest then
      earliest = t
    end
  end
  call_chunked('HDEL', seen_key, drop)
  return earliest
end

-- Writes: one per key.
local out = {}
local function put(field, value)
  out[#out + 1] = field
  out[#out + 1] = value
end
for partition, o in pairs(applied_to) do put('o:' .. partition, o) end
if #recent_add > 0 then -- events applied
  put('n', s.n)
  put('units', s.units)
  put('spend', fmt(s.spend))
  put('price_sum', fmt(s.price_sum))
  put('first', fmt(s.first))
  put('last', fmt(s.last))
  for field in pairs(touched) do
    local v = item_val[field]
    if v then
      local packed = v[1] .. '|' .. fmt(v[2]) .. '|' .. fmt(v[3])
      if v[4] then packed = packed .. '|' .. v[4] .. '|' .. fmt(v[5]) .. '|' .. v[6] end
      put(field, packed)
    elseif string.sub(field, 1, 3) == 'ch:' then
      put(field, s[field])
    else
      put(field, fmt(s[field]))
    end
  end
  call_chunked('ZADD', recent, recent_add)
  call_chunked('ZADD', win, win_add)
  -- `recent` holds one member per applied event: trim only once there can be more than the cap.
  if s.n > cap then redis.call('ZREMRANGEBYRANK', recent, 0, -(cap + 1)) end
  -- keep what a purchase late by up to one window can still pair with
  if s.first < s.last - 2 * window then
    redis.call('ZREMRANGEBYSCORE', win, '-inf', '(' .. fmt(s.last - 2 * window))
  end
  put('in', item_count)
end
if #seen_add > 0 then -- events applied or refused as late
  hset_chunked(seen, seen_add)
  -- Seen: forget the events before the horizon's cut (at most once a step: `smin` is the earliest
  -- event time it holds).
  local cut = horizon_cut(s.last, horizon)
  if smin < cut then smin = prune_seen(seen, cut) end
  if smin ~= nil then put('smin', fmt(smin)) end
end
hset_chunked(state, out)
if #seen_add > 0 and smin == nil then redis.call('HDEL', state, 'smin') end
-- Items: at most items_cap articles and as many products (amortised).
if #recent_add > 0 and item_count > math.ceil(items_cap * 2.5) then
  redis.call('HSET', state, 'in', cap_items(state, items_cap))
end
return result
