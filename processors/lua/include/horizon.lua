-- horizon_cut(t, horizon): the event-id guards' cut for a customer whose newest event time is t,
-- the horizon before the start of the quarter-horizon step holding t. Stepped, so the customer
-- script prunes its guard at most once a step, and what a guard keeps depends on the events
-- applied, not on how they were batched. Both guards (customer.lua, taste.lua) keep every event
-- applied at or after the cut of their newest, and refuse a new event before it as late: its id
-- may have been forgotten, so a second publish could not be told from a new event. One cut for
-- both, so the purchases group and the taste group refuse the same events.
local function horizon_cut(t, horizon)
  local step = math.max(1, math.floor(horizon / 4))
  return math.floor(t / step) * step - horizon
end
