-- tollgate ledger prelude, version 1: src/credits/redis.rs prepends it to
-- every ledger script; change them together.
--
-- A workspace's credits hash (KEYS[1] of the scripts) holds `period` and, per
-- kind K in {message, integration}: K:plan, K:top_up (both net of what calls
-- in flight hold), K:held_plan, K:held_top_up, K:uncollected, K:metered, K:allowance.

-- Formats an integral number without an exponent (Lua's tostring would
-- write 1e+15), for arguments and stored strings.
local function int(x)
  return string.format('%d', x)
end

-- Records the plan's terms and, when `period` (YYYY-MM) is newer than the
-- stored one, sets each plan part to its allowance: exactly once per month
-- however many replicas call it, because the compare and the write are one
-- script. An allowance of -1 means the kind is not metered.
local function refresh(credits, period, allow_message, allow_integration)
  local allowances = { message = tonumber(allow_message), integration = tonumber(allow_integration) }
  for kind, allowance in pairs(allowances) do
    redis.call('HSET', credits, kind .. ':metered', allowance >= 0 and 1 or 0, kind .. ':allowance', int(allowance))
  end
  local stored = redis.call('HGET', credits, 'period')
  if stored and stored >= period then
    return 0
  end
  redis.call('HSET', credits, 'period', period)
  for kind, allowance in pairs(allowances) do
    redis.call('HSET', credits, kind .. ':plan', int(math.max(allowance, 0)), kind .. ':held_plan', 0)
  end
  return 1
end

local function num(credits, field)
  return tonumber(redis.call('HGET', credits, field) or '0')
end
