-- The article summary (hash {a:<id>}:sum, read by serving and training in one command per
-- article, features/state.ts): field `s:<sig>` packs the sales state, `m:<sig>` the metadata the
-- features and answers use. Each is rewritten from the hashes it summarises, in the same script
-- that changed them, so it always equals them.

-- pack_sales(stats, buyers, names): the values of `names` in the stats hash, in order, then the
-- buyers' PFCOUNT, joined by '|' ('' for a missing value): the stored strings themselves, so the
-- reader parses the same numbers as from the hash.
local function pack_sales(stats, buyers, names)
  local v = redis.call('HMGET', stats, unpack(names))
  local out = {}
  for i = 1, #names do out[i] = v[i] or '' end
  out[#names + 1] = redis.call('PFCOUNT', buyers)
  return table.concat(out, '|')
end
