-- retry: gives a lease back and puts the test's next attempt at the head of
-- its execution.
-- KEYS[1]  P:leases
-- ARGV     prefix, token, execution id, test case id, next job payload
-- Returns  "requeued", "halted" (the lease is kept, so the caller settles
--          the test instead) or "stale"
local token, id, t = ARGV[2], ARGV[3], ARGV[4]
local held_id, held_t = lease_of(token)
if held_id ~= id or held_t ~= t then
  return 'stale'
end
local x = xkey(id)
if redis.call('EXISTS', x) == 0 or redis.call('HEXISTS', x, 'halt') == 1 then
  return 'halted'
end
release(token, id)
redis.call('HSET', xkey(id, ':j'), t, ARGV[5])
requeue_front(id, t)
return 'requeued'
