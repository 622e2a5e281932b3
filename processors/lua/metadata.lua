--[[
metadata.lua: last-write-wins upsert of a catalogue or customer record by event time. A record older
than the stored one (by `updated_at`) is ignored, so replays and late records give the same state.

KEYS: 1 meta hash
ARGV: 1 updated_at, 2 digest of the record (ties on updated_at keep the larger digest, so the
      outcome does not depend on arrival order), then field/value pairs (an empty value deletes)
Returns 1 when written, 0 when the stored record wins.
]]
--- @include "fmt"

local key = KEYS[1]
local t = tonumber(ARGV[1])
local digest = ARGV[2]
local stored = tonumber(redis.call('HGET', key, 'updated_at'))
if stored ~= nil then
  if stored > t then return 0 end
  if stored == t and (redis.call('HGET', key, '_digest') or '') >= digest then return 0 end
end
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', key, ARGV[i])
  else
    redis.call('HSET', key, ARGV[i], ARGV[i + 1])
  end
end
redis.call('HSET', key, 'updated_at', fmt(t), '_digest', digest)
return 1
