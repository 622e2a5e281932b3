--[[
customer.lua: apply a batch of one customer's purchase events to the customer's state, atomically.
Every key is in the customer's slot {u:<id>}.

Idempotence: hash `seen` maps each applied event id to the Kafka position it was applied from
(`<partition>:<offset>`). An event seen at the same position is a redelivery (status 'p': not
re-applied here, but returned so the other slots can complete it); seen at another position it is
a duplicate publish (status 'd': skipped everywhere); unseen it is applied (status 'n').

Co-purchase partners of an event are the customer's other purchases within +-window that were
applied before it (lower offset), nearest in time first, at most `fanout`. They are recomputed the
same way on a redelivery, because the window members carry their offsets.

Items: hash `items` keeps, per article (`a:<id>`) and per product code (`p:<code>`, the article id
when the article has none), `n|last|L`: events, latest event time, log-space decayed count at the
items rate. Counting, max and log-add commute, so the order of events does not matter.

KEYS: 1 seen, 2 stats, 3 recent, 4 window, 5 bought, 6 affinity, 7 items
ARGV: 1 epoch ms, 2 affinity rate (per ms), 3 recent cap, 4 window ms, 5 fan-out, 6 items rate,
      7 events, then per event 9 fields: event_id, article_id, t, price, qty, channel, position
      (`<partition>:<offset>`), categories (affinity fields joined by \31, may be empty),
      product code (may be empty)
Returns per event {status, partners} with partners as `article\31t` joined by \30.
]]
local seen, stats, recent, win, bought, aff, items = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6],
  KEYS[7]
local epoch = tonumber(ARGV[1])
local lambda = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local fanout = tonumber(ARGV[5])
local irate = tonumber(ARGV[6])
local n = tonumber(ARGV[7])
local FIRST, WIDTH = 8, 9 -- ARGV index of the first event, fields per event

--- @include "fmt"
--- @include "logadd"
local function offset_of(position) return tonumber(string.match(position, ':(%d+)$')) end

-- Partners of an event at time t, offset o: window members applied before it (lower offset).
local function partners_of(t, o, article)
  local limit = 2 * fanout + 8
  local found = {}
  local before = redis.call('ZREVRANGEBYSCORE', win, t, t - window, 'WITHSCORES', 'LIMIT', 0, limit)
  local after = redis.call('ZRANGEBYSCORE', win, '(' .. fmt(t), t + window, 'WITHSCORES', 'LIMIT', 0, limit)
  for _, side in ipairs({ before, after }) do
    for j = 1, #side, 2 do
      local member, ts = side[j], tonumber(side[j + 1])
      local mo, pa = string.match(member, '^(%d+)|[^|]*|(.*)$')
      if tonumber(mo) < o and pa ~= article then
        found[#found + 1] = { math.abs(ts - t), member, pa, ts }
      end
    end
  end
  table.sort(found, function(p, q)
    if p[1] ~= q[1] then return p[1] < q[1] end
    return p[2] < q[2]
  end)
  local chosen = {}
  for j = 1, math.min(fanout, #found) do
    chosen[#chosen + 1] = found[j][3] .. '\31' .. fmt(found[j][4])
  end
  return table.concat(chosen, '\30')
end

-- Current stats, updated in Lua and written once at the end.
local names = { 'n', 'units', 'spend', 'price_sum', 'first', 'last' }
local cur = redis.call('HMGET', stats, unpack(names))
local s = {}
for i, name in ipairs(names) do s[name] = tonumber(cur[i]) end
local counts = {} -- increments of integer fields (channel mix)
local changed = false

-- Item fields of an event: its article and its product (the article when it has no product code).
local function item_fields(article, product)
  if product == '' then product = article end
  return 'a:' .. article, 'p:' .. product
end

-- One read for every guard entry, affinity field and item field this batch touches.
local ids, wanted, affs, item_names, item_wanted = {}, {}, {}, {}, {}
for i = 0, n - 1 do
  local b = FIRST + i * WIDTH
  ids[#ids + 1] = ARGV[b]
  for field in string.gmatch(ARGV[b + 7], '([^\31]+)') do
    if wanted[field] == nil then
      wanted[field] = true
      affs[#affs + 1] = field
    end
  end
  local fa, fp = item_fields(ARGV[b + 1], ARGV[b + 8])
  for _, field in ipairs({ fa, fp }) do
    if item_wanted[field] == nil then
      item_wanted[field] = true
      item_names[#item_names + 1] = field
    end
  end
end
local priors = redis.call('HMGET', seen, unpack(ids))
affs[#affs + 1] = '_total'
local aff_cur = redis.call('HMGET', aff, unpack(affs))
local aff_val = {} -- field -> log-space sum (nil when empty)
for i, field in ipairs(affs) do aff_val[field] = tonumber(aff_cur[i]) end
local aff_touched = {}
local item_cur = redis.call('HMGET', items, unpack(item_names))
local item_val = {} -- field -> { n, last, L }
for i, field in ipairs(item_names) do
  local v = item_cur[i]
  if v then
    local cn, cl, cL = string.match(v, '^([^|]*)|([^|]*)|(.*)$')
    item_val[field] = { tonumber(cn), tonumber(cl), tonumber(cL) }
  end
end
local item_touched = {}
local applied_now = {}

local result = {}
for i = 0, n - 1 do
  local b = FIRST + i * WIDTH
  local e, article = ARGV[b], ARGV[b + 1]
  local t, price, qty, channel = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), ARGV[b + 5]
  local position, cats = ARGV[b + 6], ARGV[b + 7]
  local o = offset_of(position)
  local prior = applied_now[e] or priors[i + 1]
  if prior == position then
    result[#result + 1] = { 'p', partners_of(t, o, article) }
  elseif prior then
    result[#result + 1] = { 'd', '' }
  else
    changed = true
    s.n = (s.n or 0) + 1
    s.units = (s.units or 0) + qty
    s.spend = (s.spend or 0) + price * qty
    s.price_sum = (s.price_sum or 0) + price
    if s.first == nil or t < s.first then s.first = t end
    if s.last == nil or t > s.last then s.last = t end
    counts['ch:' .. channel] = (counts['ch:' .. channel] or 0) + 1

    redis.call('ZADD', recent, t, fmt(t) .. '|' .. e .. '|' .. article .. '|' .. fmt(price) .. '|' .. channel .. '|' .. qty)
    redis.call('HINCRBY', bought, article, qty)

    local x = lambda * (t - epoch)
    aff_val['_total'] = logadd(aff_val['_total'], x)
    aff_touched['_total'] = true
    for field in string.gmatch(cats, '([^\31]+)') do
      aff_val[field] = logadd(aff_val[field], x)
      aff_touched[field] = true
    end
    local ix = irate * (t - epoch)
    local fa, fp = item_fields(article, ARGV[b + 8])
    for _, field in ipairs({ fa, fp }) do
      local v = item_val[field]
      if v == nil then
        item_val[field] = { 1, t, ix }
      else
        item_val[field] = { v[1] + 1, math.max(v[2], t), logadd(v[3], ix) }
      end
      item_touched[field] = true
    end

    local plist = partners_of(t, o, article)
    redis.call('ZADD', win, t, o .. '|' .. e .. '|' .. article)
    redis.call('HSET', seen, e, position)
    applied_now[e] = position -- a second copy later in this batch is a duplicate
    result[#result + 1] = { 'n', plist }
  end
end

if changed then
  redis.call('HSET', stats, 'n', s.n, 'units', s.units, 'spend', fmt(s.spend), 'price_sum', fmt(s.price_sum),
    'first', fmt(s.first), 'last', fmt(s.last))
  for field, inc in pairs(counts) do redis.call('HINCRBY', stats, field, inc) end
  local flat = {}
  for field in pairs(aff_touched) do
    flat[#flat + 1] = field
    flat[#flat + 1] = fmt(aff_val[field])
  end
  if #flat > 0 then redis.call('HSET', aff, unpack(flat)) end
  local iflat = {}
  for field in pairs(item_touched) do
    local v = item_val[field]
    iflat[#iflat + 1] = field
    iflat[#iflat + 1] = v[1] .. '|' .. fmt(v[2]) .. '|' .. fmt(v[3])
  end
  if #iflat > 0 then redis.call('HSET', items, unpack(iflat)) end
  redis.call('ZREMRANGEBYRANK', recent, 0, -(cap + 1))
  -- keep what a purchase late by up to one window can still pair with
  redis.call('ZREMRANGEBYSCORE', win, '-inf', '(' .. fmt(s.last - 2 * window))
end
return result
