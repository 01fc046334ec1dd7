-- tollgate revoke_key, version 1.
-- Loaded by src/store/redis.rs (`REVOKE_KEY`, through include_str!); change
-- both together and bump the version.
--
-- Sets `revoked_at` on a key record unless it is already set, atomically.
-- KEYS[1]: the key record (a hash, `<prefix>:key:{<workspace>}:<key id>`).
-- ARGV[1]: the revocation time, Unix seconds.
-- Returns 1 when this call revoked the key; 0 when there is no record or it
-- was already revoked (the first revocation time is kept).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
return redis.call('HSETNX', KEYS[1], 'revoked_at', ARGV[1])
