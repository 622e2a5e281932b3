-- logadd(a, b) = log(exp(a) + exp(b)) without overflow: decayed counts are kept in log space
-- (score = rate * (t - epoch) per event), so adding an event is a log-add. a = nil (nothing yet)
-- gives b.
local function logadd(a, b)
  if a == nil then return b end
  local hi, lo = a, b
  if b > a then hi, lo = b, a end
  return hi + math.log(1 + math.exp(lo - hi))
end
