-- The offset guard of the scripts whose slot takes events of every partition (article,
-- co-purchase, trending): hash `offsets` keeps, per source partition, the highest offset applied
-- (field `<prefix><partition>`). Events arrive in offset order per partition, so an event at or
-- below it was applied already. `last` holds the batch's view: partition -> highest offset.

-- The highest offset applied from `partition` (-1 for none), read once per batch into `last`.
local function applied_offset(offsets, prefix, last, partition)
  if last[partition] == nil then
    last[partition] = tonumber(redis.call('HGET', offsets, prefix .. partition)) or -1
  end
  return last[partition]
end

-- Store `last` (every partition the batch read) back into `offsets`.
local function save_offsets(offsets, prefix, last)
  local offs = {}
  for partition, o in pairs(last) do
    offs[#offs + 1] = prefix .. partition
    offs[#offs + 1] = o
  end
  redis.call('HSET', offsets, unpack(offs))
end
