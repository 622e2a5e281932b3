-- trim_top(key, cap, added): keep about `cap` members of a sorted set of log-space decayed scores,
-- the highest (their ranking is the same at every "now", so these are the top by decayed count).
-- Amortised: only a call that added members (`added`, the sum of its ZADD replies) looks at the
-- size, and the set is trimmed back to exactly `cap` once it holds more than ceil(cap * 1.25).
-- A member trimmed and seen again starts over from its new events.
local function trim_top(key, cap, added)
  if added > 0 and redis.call('ZCARD', key) > math.ceil(cap * 1.25) then
    redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
  end
end
