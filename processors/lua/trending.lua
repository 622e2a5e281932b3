--[[
trending.lua: add a batch of purchase events to the trending sorted sets (global and per segment).
Scores are log-space decayed counts, so the ranking of a set is the same at every "now" and a
value is read as exp(score - rate * (now - epoch)). Every key is in the trending slot {t}.

Bounded: each sorted set keeps about `cap` articles, the top by decayed count (include/trim.lua:
trimmed back to `cap` when a call that added articles to it finds more than ceil(cap * 1.25)).

Idempotence: hash `offsets` keeps, per source partition, the highest offset applied here; events
at or below it are skipped. Events arrive in offset order per partition.

KEYS: 1 offsets (hash), 2..k+1 the sorted sets used by this batch
ARGV: 1 epoch, 2 cap, 3 k, then k rates (one per sorted set, by its half-life), then events, then
      per event: partition, offset, article_id, t, m, and m indexes into the sorted sets (1-based)
Returns the number of events applied.
]]
local offsets = KEYS[1]
local epoch = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local k = tonumber(ARGV[3])
local rates = {}
for j = 1, k do rates[j] = tonumber(ARGV[3 + j]) end
local pos = 4 + k
local n = tonumber(ARGV[pos])
pos = pos + 1

--- @include "logadd"
--- @include "offsets"
--- @include "trim"
--- @include "zlogadd"

local last = {}
local add = {} -- set index -> article -> log-space sum of this batch
for j = 1, k do add[j] = {} end
local applied = 0
for _ = 1, n do
  local partition, o = ARGV[pos], tonumber(ARGV[pos + 1])
  local article, t, m = ARGV[pos + 2], tonumber(ARGV[pos + 3]), tonumber(ARGV[pos + 4])
  if o > applied_offset(offsets, '', last, partition) then
    last[partition] = o
    applied = applied + 1
    for j = 1, m do
      local idx = tonumber(ARGV[pos + 4 + j])
      add[idx][article] = logadd(add[idx][article], rates[idx] * (t - epoch))
    end
  end
  pos = pos + 5 + m
end
if applied > 0 then
  for j = 1, k do
    local key = KEYS[1 + j]
    trim_top(key, cap, zset_logadd(key, add[j]))
  end
  save_offsets(offsets, '', last)
end
return applied
