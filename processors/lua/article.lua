--[[
article.lua: apply a batch of purchase events of one article to the article's state: counts,
revenue, first / last sold, decayed popularity, unique buyers, and the outgoing co-purchase counts
of each event's partners; then the sales part of the article summary (include/summary.lua). Every
key is in the article's slot {a:<id>}.

Bounded: the co-purchase set keeps about `cap` partners, the top by decayed count (include/trim.lua:
trimmed back to `cap` when a call that added partners finds more than ceil(cap * 1.25)); the
incoming side (copurchase.lua) trims the same set alike.

Idempotence: hash `offsets` keeps, per source partition, the highest offset applied here (field
`a:<partition>`); events at or below it were applied already and are skipped. Events arrive in
offset order per partition. An event new to its customer (status 'n') at or below that offset
means the topic was recreated under a store that remembers the old one: refused loudly.

KEYS: 1 stats (hash), 2 buyers (hll), 3 copurchase (zset), 4 offsets (hash), 5 summary (hash)
ARGV: 1 epoch, 2 co-purchase rate, 3 co-purchase cap, 4 number of popularity half-lives h, then
      h pairs (label, rate), then the summary's sales field, then events, then per event 8 fields:
      partition, offset, status, customer_id, t, price, qty, partners (`article\31t` joined by \30)
Returns the number of events applied.
]]
local stats, buyers, co, offsets, summary = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local epoch = tonumber(ARGV[1])
local corate = tonumber(ARGV[2])
local cocap = tonumber(ARGV[3])
local h = tonumber(ARGV[4])
local pops = {}
for j = 0, h - 1 do pops[#pops + 1] = { 'pop:' .. ARGV[5 + 2 * j], tonumber(ARGV[6 + 2 * j]) } end
local sales_field = ARGV[5 + 2 * h]
local base = 6 + 2 * h
local n = tonumber(ARGV[base])

--- @include "fmt"
--- @include "logadd"
--- @include "offsets"
--- @include "summary"
--- @include "chunks"
--- @include "trim"
--- @include "zlogadd"

local names = { 'n', 'units', 'revenue', 'price_sum', 'first', 'last' }
for _, p in ipairs(pops) do names[#names + 1] = p[1] end
local cur = redis.call('HMGET', stats, unpack(names))
local s = {}
for i, name in ipairs(names) do s[name] = tonumber(cur[i]) end
local last = {}
local buyer_list = {}
local co_add = {}
local applied = 0

for i = 0, n - 1 do
  local b = base + 1 + i * 8
  local partition, o, status = ARGV[b], tonumber(ARGV[b + 1]), ARGV[b + 2]
  if o <= applied_offset(offsets, 'a:', last, partition) then
    if status == 'n' then
      return redis.error_reply('REC_OFFSET_REGRESSION: offset ' .. o .. ' of partition ' .. partition ..
        ' was applied before, yet its event is new: the topic was recreated while this Redis namespace ' ..
        'kept the old state; clear the namespace (or use a new REDIS_NAMESPACE) and reprocess')
    end
  else
    last[partition] = o
    applied = applied + 1
    local customer, t, price, qty, plist = ARGV[b + 3], tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]),
      tonumber(ARGV[b + 6]), ARGV[b + 7]
    s.n = (s.n or 0) + 1
    s.units = (s.units or 0) + qty
    s.revenue = (s.revenue or 0) + price * qty
    s.price_sum = (s.price_sum or 0) + price
    if s.first == nil or t < s.first then s.first = t end
    if s.last == nil or t > s.last then s.last = t end
    for _, p in ipairs(pops) do s[p[1]] = logadd(s[p[1]], p[2] * (t - epoch)) end
    buyer_list[#buyer_list + 1] = customer
    for pair in string.gmatch(plist, '([^\30]+)') do
      local pa, pt = string.match(pair, '^(.*)\31(.*)$')
      local x = corate * (math.max(t, tonumber(pt)) - epoch)
      co_add[pa] = logadd(co_add[pa], x)
    end
  end
end

if applied > 0 then
  local flat = { 'n', s.n, 'units', s.units, 'revenue', fmt(s.revenue), 'price_sum', fmt(s.price_sum),
    'first', fmt(s.first), 'last', fmt(s.last) }
  for _, p in ipairs(pops) do
    flat[#flat + 1] = p[1]
    flat[#flat + 1] = fmt(s[p[1]])
  end
  redis.call('HSET', stats, unpack(flat))
  call_chunked('PFADD', buyers, buyer_list)
  trim_top(co, cocap, zset_logadd(co, co_add))
  save_offsets(offsets, 'a:', last)
  redis.call('HSET', summary, sales_field, pack_sales(stats, buyers, names))
end
return applied
