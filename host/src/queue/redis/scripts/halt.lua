-- halt: stops an execution (cancel, or stop on failure): waiting tests are
-- settled without running; workers learn of it on their next heartbeat.
-- KEYS[1]  P:ready
-- ARGV     prefix, execution id, reason ("cancelled" | "stopped_on_failure")
-- Returns  1 if the queue holds the execution, else 0
local id = ARGV[2]
if redis.call('EXISTS', xkey(id)) == 0 then
  return 0
end
halt(id, ARGV[3])
return 1
