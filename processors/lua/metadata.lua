--[[
metadata.lua: last-write-wins upsert of a catalogue or customer record by event time. A record older
than the stored one (by `updated_at`) is ignored, so replays and late records give the same state.

An article record also rewrites the metadata part of the article summary (include/summary.lua):
the fields the features and answers use, as a JSON array in their order ('' for a missing one: a
stored field is never empty); and writes its sales part when the summary has none yet (an article
that has not sold: every value empty, 0 buyers).

KEYS: 1 meta hash; for an article record also 2 summary (hash), 3 stats (hash), 4 buyers (hll)
ARGV: 1 updated_at, 2 digest of the record (ties on updated_at keep the larger digest, so the
      outcome does not depend on arrival order), 3 '1' for an article record (the summary is
      written, by the layout SUMMARY_ARGS generated into the script), '0' for a customer record;
      then field/value pairs (an empty value deletes)
Returns 1 when written, 0 when the stored record wins.
]]
--- @include "fmt"
--- @include "summary"
--- @include "summary-args"

local key = KEYS[1]
local t = tonumber(ARGV[1])
local digest = ARGV[2]
local article = ARGV[3] == '1'
local prev = redis.call('HMGET', key, 'updated_at', '_digest')
local stored = tonumber(prev[1])
if stored ~= nil then
  if stored > t then return 0 end
  if stored == t and (prev[2] or '') >= digest then return 0 end
end
-- One HDEL of the emptied fields, one HSET of the others (a record has a few dozen fields).
local set, del = {}, {}
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    del[#del + 1] = ARGV[i]
  else
    set[#set + 1] = ARGV[i]
    set[#set + 1] = ARGV[i + 1]
  end
end
if #del > 0 then redis.call('HDEL', key, unpack(del)) end
set[#set + 1] = 'updated_at'
set[#set + 1] = fmt(t)
set[#set + 1] = '_digest'
set[#set + 1] = digest
redis.call('HSET', key, unpack(set))

if article then
  local summary, stats, buyers = KEYS[2], KEYS[3], KEYS[4]
  local meta_field, sales_field, f = SUMMARY_ARGS[1], SUMMARY_ARGS[2], tonumber(SUMMARY_ARGS[3])
  local fields, names = {}, {}
  for i = 1, f do fields[i] = SUMMARY_ARGS[3 + i] end
  for i = 4 + f, #SUMMARY_ARGS do names[#names + 1] = SUMMARY_ARGS[i] end
  local v = redis.call('HMGET', key, unpack(fields))
  local m = {}
  for i = 1, f do m[i] = v[i] or '' end
  redis.call('HSET', summary, meta_field, cjson.encode(m))
  if redis.call('HEXISTS', summary, sales_field) == 0 then
    redis.call('HSET', summary, sales_field, pack_sales(stats, buyers, names))
  end
end
return 1
