-- tollgate balances, version 2 (after the refresh.lua prelude, version 3).
-- Loaded by src/credits/redis.rs; change both together and bump the version.
--
-- Refreshes a workspace's credits if a new month began, optionally adds a
-- top-up, and returns the credits hash as a flat field/value list.
-- KEYS[1] credits hash. ARGV[1] period, ARGV[2] message allowance,
-- ARGV[3] integration allowance (-1: not metered), ARGV[4] kind to top up,
-- ARGV[5] top-up amount (0: none), ARGV[6] the largest a top-up part may hold.
-- Returns the hash, or {'too_large'} when the top-up would pass the bound.
local c = load_credits(KEYS[1])
refresh(c, ARGV[1], ARGV[2], ARGV[3])
local amount = tonumber(ARGV[5])
if amount > 0 then
  local field = ARGV[4] .. ':top_up'
  -- Compared as bound - amount (exact: both at most 2^53), never as a sum
  -- that could round; what calls in flight hold counts too.
  if get(c, field) + get(c, ARGV[4] .. ':held_top_up') > tonumber(ARGV[6]) - amount then
    save(KEYS[1], c)
    return { 'too_large' }
  end
  add(c, field, amount)
end
save(KEYS[1], c)
return redis.call('HGETALL', KEYS[1])
