-- heartbeat: renews a worker's leases and registers the worker as alive.
-- KEYS[1]  P:leases
-- ARGV     prefix, now (unix ms), lease (ms), worker id, then tokens
-- Returns  per token: "held", "lost" (expired and reaped), or the halt
--          reason ("cancelled" | "stopped_on_failure") when its execution
--          was halted: the worker aborts the test
local now, lease_ms = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZADD', P .. ':workers', now + lease_ms, ARGV[4])
local out = {}
for i = 5, #ARGV do
  local id = lease_of(ARGV[i])
  if not id then
    out[#out + 1] = 'lost'
  else
    redis.call('ZADD', P .. ':leases', 'XX', now + lease_ms, ARGV[i])
    out[#out + 1] = redis.call('HGET', xkey(id), 'halt') or 'held'
  end
end
return out
