-- finish: settles a leased test with its result, once, and (with
-- stop_on_first_failure) halts the execution in the same step.
-- KEYS[1]  P:leases
-- ARGV     prefix, token, execution id, test case id, status, time (ms),
--          flaky (0|1), halt on failure (0|1), result (JSON)
-- Returns  "recorded", "halted" (recorded, and it stopped the execution),
--          "duplicate" or "stale" (the lease is not the caller's)
local token, id, t, status = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local held_id, held_t = lease_of(token)
if held_id ~= id or held_t ~= t then
  return 'stale'
end
release(token, id)
local x = xkey(id)
if redis.call('EXISTS', x) == 0 then
  return 'stale'
end
if redis.call('SADD', xkey(id, ':s'), t) == 0 then
  return 'duplicate'
end
redis.call('HDEL', xkey(id, ':j'), t)
count(id, status, tonumber(ARGV[6]), ARGV[7] == '1')
emit('settled', ARGV[9])
local halted = false
if ARGV[8] == '1' and (status == 'failed' or status == 'error') and redis.call('HEXISTS', x, 'halt') == 0 then
  halt(id, 'stopped_on_failure')
  halted = true
end
finish_if_settled(id)
if halted then
  return 'halted'
end
return 'recorded'
