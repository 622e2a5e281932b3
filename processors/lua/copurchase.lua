--[[
copurchase.lua: the incoming side of co-purchase pairs. For each event whose buyer had bought this
article (the partner) within the window, add the pair to this article's co-purchase set towards the
event's article. Every key is in the partner article's slot {a:<id>}.

Bounded: the co-purchase set keeps about `cap` partners, the top by decayed count (include/trim.lua:
trimmed back to `cap` when a call that added partners finds more than ceil(cap * 1.25)); the
outgoing side (article.lua) trims the same set alike.

Idempotence: hash `offsets` keeps, per source partition, the highest offset applied here (field
`c:<partition>`); events at or below it are skipped. Events arrive in offset order per partition.

KEYS: 1 copurchase (zset), 2 offsets (hash)
ARGV: 1 epoch, 2 co-purchase rate, 3 co-purchase cap, 4 events, then per event 4 fields:
      partition, offset, article_id (the event's article), pair times (`max(t_event, t_partner)`
      joined by \30)
Returns the number of events applied.
]]
local co, offsets = KEYS[1], KEYS[2]
local epoch = tonumber(ARGV[1])
local corate = tonumber(ARGV[2])
local cocap = tonumber(ARGV[3])
local n = tonumber(ARGV[4])

--- @include "logadd"
--- @include "offsets"
--- @include "trim"
--- @include "zlogadd"

local last = {}
local add = {}
local applied = 0
for i = 0, n - 1 do
  local b = 5 + i * 4
  local partition, o = ARGV[b], tonumber(ARGV[b + 1])
  if o > applied_offset(offsets, 'c:', last, partition) then
    last[partition] = o
    applied = applied + 1
    local article = ARGV[b + 2]
    for pt in string.gmatch(ARGV[b + 3], '([^\30]+)') do
      add[article] = logadd(add[article], corate * (tonumber(pt) - epoch))
    end
  end
end
if applied > 0 then
  trim_top(co, cocap, zset_logadd(co, add))
  save_offsets(offsets, 'c:', last)
end
return applied
