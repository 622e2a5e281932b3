--[[
customer.lua: apply a batch of one customer's purchase events to the customer's state, atomically.
Every key is in the customer's slot {u:<id>}. The batch costs a fixed number of commands (reads
first, one write per key at the end), not a few per event.

Idempotence: hash `off` keeps, per source partition, the highest offset applied here (field
`o:<partition>`); hash `seen` maps each event id applied within the dedup horizon to
`<partition>:<offset>|<event time>`. An event seen at its own position is a redelivery (status
'p': not re-applied here, but returned so the other slots can complete it); seen at another, a
duplicate publish (status 'd': skipped everywhere); unseen at or below its partition's offset, a
redelivery whose entry was forgotten ('p'); else it is applied ('n'). `seen` forgets events older than the customer's newest event time minus `horizon`, rounded
down to a quarter-horizon step (so it is pruned at most once a step, and what it keeps does not
depend on how events were batched; `off` field `smin` is the earliest time it holds): a second
publish of an event is recognised within the horizon of event time; a redelivery is recognised by
position whatever its age. An event at or below the offset, unseen, and young enough that its id
cannot have been forgotten means the topic was recreated under a store that remembers the old
one: refused loudly (REC_OFFSET_REGRESSION).

Co-purchase partners of an event are the customer's other purchases within +-window that were
applied before it (lower offset), nearest in time first, at most `fanout`. They are computed from
one read of the window around the whole batch, and recomputed the same way on a redelivery,
because the window members carry their offsets.

Items: hash `items` keeps, per article (`a:<id>`) and per product code (`p:<code>`, the article id
when the article has none), `n|last|L`: events, latest event time, log-space decayed count at the
items rate. Counting, max and log-add commute, so the order of events does not matter. `items`
and `bought` keep at most `items cap` articles and as many products: once `items` holds more than
2.5 x the cap entries (count in `off` field `in`), each kind is cut to the cap, the entries with the
lowest decayed count going (dropped articles leave `bought` too).

KEYS: 1 seen, 2 stats, 3 recent, 4 window, 5 bought, 6 affinity, 7 items, 8 off
ARGV: 1 epoch ms, 2 affinity rate (per ms), 3 recent cap, 4 window ms, 5 fan-out, 6 items rate,
      7 dedup horizon ms, 8 items cap, 9 events, then per event 9 fields: event_id, article_id, t,
      price, qty, channel, position (`<partition>:<offset>`), categories (affinity fields joined
      by \31, may be empty), product code (may be empty)
Returns per event {status, partners} with partners as `article\31t` joined by \30.
]]
local seen, stats, recent, win, bought, aff, items, off = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5],
  KEYS[6], KEYS[7], KEYS[8]
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
--- @include "chunked"

-- The batch's events, parsed once.
local ev = {}
local partitions, channels = {}, {}
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
  channels['ch:' .. e.channel] = true
  if tmin == nil or e.t < tmin then tmin = e.t end
  if tmax == nil or e.t > tmax then tmax = e.t end
end

-- Reads: bookkeeping, stats (with the batch's channel counts), guard entries, affinity and item
-- fields, the window around the batch.
local off_names = { 'smin', 'in' }
for partition in pairs(partitions) do off_names[#off_names + 1] = 'o:' .. partition end
local off_cur = redis.call('HMGET', off, unpack(off_names))
local smin, item_count = tonumber(off_cur[1]), tonumber(off_cur[2])
local applied_to = {}
for j = 3, #off_names do applied_to[string.sub(off_names[j], 3)] = tonumber(off_cur[j]) or -1 end

local names = { 'n', 'units', 'spend', 'price_sum', 'first', 'last' }
local nstat = #names
for field in pairs(channels) do names[#names + 1] = field end
local cur = redis.call('HMGET', stats, unpack(names))
local s = {}
for i, name in ipairs(names) do s[name] = tonumber(cur[i]) end
-- A customer with events but no `smin` was written before the horizon existed: its guard
-- entries have no time and are pruned at its next batch.
local legacy = smin == nil and s.n ~= nil

local ids = {}
for i, e in ipairs(ev) do ids[i] = e.id end
local priors = hmget_chunked(seen, ids)

local affs, wanted, item_names, item_wanted = {}, {}, {}, {}
for _, e in ipairs(ev) do
  for field in string.gmatch(e.cats, '([^\31]+)') do
    if wanted[field] == nil then
      wanted[field] = true
      affs[#affs + 1] = field
    end
  end
  for _, field in ipairs({ 'a:' .. e.article, 'p:' .. e.product }) do
    if item_wanted[field] == nil then
      item_wanted[field] = true
      item_names[#item_names + 1] = field
    end
  end
end
affs[#affs + 1] = '_total'
local aff_cur = hmget_chunked(aff, affs)
local aff_val = {} -- field -> log-space sum (nil when empty)
for i, field in ipairs(affs) do aff_val[field] = tonumber(aff_cur[i]) end
local item_cur = hmget_chunked(items, item_names)
local item_val = {} -- field -> { n, last, L }
for i, field in ipairs(item_names) do
  local v = item_cur[i]
  if v then
    local cn, cl, cL = string.match(v, '^([^|]*)|([^|]*)|(.*)$')
    item_val[field] = { tonumber(cn), tonumber(cl), tonumber(cL) }
  end
end

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

-- The guard keeps the events at or after horizon_cut(newest event time): the horizon before the
-- start of the quarter-horizon step holding it. Stepped, so that pruning runs once a step, and
-- what is kept depends on the events applied, not on how they were batched.
local step = math.max(1, math.floor(horizon / 4))
local function horizon_cut(t) return math.floor(t / step) * step - horizon end

-- Pass 1: each event's status, and the state of the events applied now.
local status = {}
local applied_now = {}
local recent_add, win_add, seen_add, bought_inc = {}, {}, {}, {}
local aff_touched, item_touched = {}, {}
local newest = s.last
for i, e in ipairs(ev) do
  local prior = applied_now[e.id] or priors[i]
  local prior_pos = prior and position_of(prior)
  if prior_pos == e.position then
    status[i] = 'p'
  elseif prior then
    status[i] = 'd'
  elseif e.o <= applied_to[e.partition] then
    -- Processed before and forgotten since (older than the horizon), or a recreated topic.
    if newest ~= nil and e.t >= horizon_cut(newest) then
      return redis.error_reply('REC_OFFSET_REGRESSION: offset ' .. e.o .. ' of partition ' .. e.partition ..
        ' was applied to this customer before, yet its event is unknown: the topic was recreated while this ' ..
        'Redis namespace kept the old state; clear the namespace (or use a new REDIS_NAMESPACE) and reprocess')
    end
    status[i] = 'p'
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

    recent_add[#recent_add + 1] = e.t
    recent_add[#recent_add + 1] = fmt(e.t) .. '|' .. e.id .. '|' .. e.article .. '|' .. fmt(e.price) .. '|' ..
        e.channel .. '|' .. e.qty
    bought_inc[e.article] = (bought_inc[e.article] or 0) + e.qty

    local x = lambda * (e.t - epoch)
    aff_val['_total'] = logadd(aff_val['_total'], x)
    aff_touched['_total'] = true
    for field in string.gmatch(e.cats, '([^\31]+)') do
      aff_val[field] = logadd(aff_val[field], x)
      aff_touched[field] = true
    end
    local ix = irate * (e.t - epoch)
    for _, field in ipairs({ 'a:' .. e.article, 'p:' .. e.product }) do
      local v = item_val[field]
      if v == nil then
        item_val[field] = { 1, e.t, ix }
        item_count = item_count and item_count + 1
      else
        item_val[field] = { v[1] + 1, math.max(v[2], e.t), logadd(v[3], ix) }
      end
      item_touched[field] = true
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
  result[i] = { status[i], status[i] == 'd' and '' or partners_of(e.t, e.o, e.article) }
end

-- Keep the `cap` articles and the `cap` products of `items` with the highest decayed count
-- (L, log space: comparable across entries); drop the others, and the dropped articles from
-- `bought`. Returns the entries left.
local function cap_items(items_key, bought_key, cap)
  local all = redis.call('HGETALL', items_key)
  local kinds = { a = {}, p = {} }
  for j = 1, #all, 2 do
    local kind = string.sub(all[j], 1, 1)
    local L = tonumber(string.match(all[j + 1], '|([^|]*)$')) or -math.huge
    local list = kinds[kind]
    if list then list[#list + 1] = { all[j], L } end
  end
  local drop, unbought, left = {}, {}, 0
  for kind, list in pairs(kinds) do
    table.sort(list, function(p, q)
      if p[2] ~= q[2] then return p[2] > q[2] end
      return p[1] < q[1]
    end)
    for k = cap + 1, #list do
      drop[#drop + 1] = list[k][1]
      if kind == 'a' then unbought[#unbought + 1] = string.sub(list[k][1], 3) end
    end
    left = left + math.min(cap, #list)
  end
  call_chunked('HDEL', items_key, drop)
  call_chunked('HDEL', bought_key, unbought)
  return left
end

-- Forget the guard entries of events before `cut`; returns the earliest event time left (nil
-- when none). Entries without a time (written before the horizon existed) are forgotten too.
local function prune_seen(seen_key, cut)
  local all = redis.call('HGETALL', seen_key)
  local drop, earliest = {}, nil
  for j = 1, #all, 2 do
    local t = tonumber(string.match(all[j + 1], '|(.*)$'))
    if t == nil or t < cut then
      drop[#drop + 1] = all[j]
    elseif earliest == nil or t < earliest then
      earliest = t
    end
  end
  call_chunked('HDEL', seen_key, drop)
  return earliest
end

-- Writes: one per key.
local off_flat = {}
for partition, o in pairs(applied_to) do
  off_flat[#off_flat + 1] = 'o:' .. partition
  off_flat[#off_flat + 1] = o
end
if #seen_add > 0 then
  local out = { 'n', s.n, 'units', s.units, 'spend', fmt(s.spend), 'price_sum', fmt(s.price_sum),
    'first', fmt(s.first), 'last', fmt(s.last) }
  for j = nstat + 1, #names do
    local field = names[j]
    if s[field] ~= nil then
      out[#out + 1] = field
      out[#out + 1] = s[field]
    end
  end
  redis.call('HSET', stats, unpack(out))
  call_chunked('ZADD', recent, recent_add)
  call_chunked('ZADD', win, win_add)
  for article, qty in pairs(bought_inc) do redis.call('HINCRBY', bought, article, qty) end
  local aflat = {}
  for field in pairs(aff_touched) do
    aflat[#aflat + 1] = field
    aflat[#aflat + 1] = fmt(aff_val[field])
  end
  hset_chunked(aff, aflat)
  local iflat = {}
  for field in pairs(item_touched) do
    local v = item_val[field]
    iflat[#iflat + 1] = field
    iflat[#iflat + 1] = v[1] .. '|' .. fmt(v[2]) .. '|' .. fmt(v[3])
  end
  hset_chunked(items, iflat)
  hset_chunked(seen, seen_add)
  -- `recent` holds one member per applied event: trim only once there can be more than the cap.
  if s.n > cap then redis.call('ZREMRANGEBYRANK', recent, 0, -(cap + 1)) end
  -- keep what a purchase late by up to one window can still pair with
  if s.first < s.last - 2 * window then
    redis.call('ZREMRANGEBYSCORE', win, '-inf', '(' .. fmt(s.last - 2 * window))
  end

  -- Items and bought: at most items_cap articles and as many products (amortised).
  if item_count == nil then item_count = redis.call('HLEN', items) end
  if item_count > math.ceil(items_cap * 2.5) then
    item_count = cap_items(items, bought, items_cap)
  end
  -- Seen: forget the events before the horizon's cut (at most once a step; `smin` is the earliest
  -- event time kept, unknown in a store written before the horizon existed).
  local cut = horizon_cut(s.last)
  if legacy or smin < cut then smin = prune_seen(seen, cut) end
  if smin ~= nil then
    off_flat[#off_flat + 1] = 'smin'
    off_flat[#off_flat + 1] = fmt(smin)
  else
    redis.call('HDEL', off, 'smin')
  end
  off_flat[#off_flat + 1] = 'in'
  off_flat[#off_flat + 1] = item_count
end
redis.call('HSET', off, unpack(off_flat))
return result
