-- fmt(x): a number as the scripts store it, '%.17g' (17 significant digits: the same double when
-- read back).
local function fmt(x) return string.format('%.17g', x) end
