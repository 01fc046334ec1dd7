-- tollgate timeline advance, version 1.
-- Loaded by src/schedules/timeline/redis.rs; change both together and bump the version.
--
-- The scheduler's claim: moves a member of one timeline from the score the
-- caller saw to the next (or takes it off), only if it is still there, and
-- then records the run the claim starts on the runs timeline. Of the
-- replicas that saw the same score, exactly one gets 1.
--
-- KEYS[1] the timeline, KEYS[2] the runs timeline (one hash tag: one slot).
-- ARGV[1] the member, ARGV[2] the expected score, ARGV[3] the next score or
-- '' (take it off), ARGV[4] the run's member or '' (none), ARGV[5] its score.
-- Returns 1 when it moved, 0 when the score was not the expected one.
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not at or tonumber(at) ~= tonumber(ARGV[2]) then
  return 0
end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
end
return 1
