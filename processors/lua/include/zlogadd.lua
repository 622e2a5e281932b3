-- zset_logadd(key, add): each member m of table `add` (member -> log-space sum x of this call's
-- events) gets score logadd(its score, x), a new member x. One ZMSCORE and one ZADD per 2000
-- members instead of a ZSCORE and a ZADD each: an online-retail-dev batch adds about 160 partners
-- to an article's co-purchase set, and each redis.call from Lua has a fixed cost. (ZMSCORE needs
-- Redis 6.2.) Returns the members new to the set (the sum of ZADD's replies), for trim_top.
--- @include "fmt"
--- @include "logadd"
local function zset_logadd(key, add)
  local members, xs = {}, {}
  for m, x in pairs(add) do
    members[#members + 1] = m
    xs[#xs + 1] = x
  end
  local added = 0
  for i = 1, #members, 2000 do
    local j = math.min(i + 1999, #members)
    local cur = redis.call('ZMSCORE', key, unpack(members, i, j))
    local flat = {}
    for q = i, j do
      flat[#flat + 1] = fmt(logadd(tonumber(cur[q - i + 1]), xs[q]))
      flat[#flat + 1] = members[q]
    end
    added = added + redis.call('ZADD', key, unpack(flat))
  end
  return added
end
