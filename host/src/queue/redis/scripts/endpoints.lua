-- endpoints: merges one process's model endpoint reports into the
-- deployment's limits and returns them all (sandbox/endpoints.rs).
-- Each endpoint has one limit D for the whole deployment:
--   a push-back sets D to half of min(D, what the deployment had in
--   flight), estimated as the reporter's in-flight times the processes, at
--   most once per `gap` ms for the whole deployment (one burst counts once);
--   n successes grow D as n successive increments of 1/D would
--   (D' = sqrt(D^2 + 2n)); D stays within 1..max.
-- Processes are the workers with a live heartbeat (at least 1); each uses
-- D / processes.
-- KEYS[1]  P:endpoints        hash  endpoint -> D
-- ARGV     prefix, now (unix ms), gap (ms), max, then triples: endpoint,
--          successes, in flight at a push-back (0: none)
-- Keys     P:endpoints:cut    hash  endpoint -> last decrease (unix ms)
-- Returns  processes, then pairs: endpoint, D (as text)
local now, gap, max = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local limits, cuts = P .. ':endpoints', P .. ':endpoints:cut'
local processes = math.max(1, redis.call('ZCOUNT', P .. ':workers', now, '+inf'))
for i = 5, #ARGV, 3 do
  local name, successes, pushed = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local d = tonumber(redis.call('HGET', limits, name)) or max
  if pushed > 0 then
    local last = tonumber(redis.call('HGET', cuts, name)) or 0
    if now - last >= gap then
      d = math.min(d, pushed * processes) / 2
      redis.call('HSET', cuts, name, now)
    end
  elseif successes > 0 then
    d = math.sqrt(d * d + 2 * successes)
  end
  d = math.max(1, math.min(max, d))
  redis.call('HSET', limits, name, tostring(d))
end
local out = { processes }
local all = redis.call('HGETALL', limits)
for i = 1, #all do
  out[#out + 1] = all[i]
end
return out
