-- The HTTP benchmark's load (benchmarks/http.py runs it with wrk).
--
-- Each connection alternates GET /health and an authenticated GET /recalls.
-- Every answer other than 200 is an error. A thread stops after its share of
-- BENCH_MAX_REQUESTS answers, so a level is bounded in requests as well as in
-- time (-d). The key comes from the environment, never the command line, where
-- any local user could read it.

local api_key = os.getenv("BENCH_API_KEY")
local budget = tonumber(os.getenv("BENCH_MAX_PER_THREAD") or "0")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  sent, answered, not_ok = 0, 0, 0
  health = wrk.format("GET", "/health")
  recalls = wrk.format("GET", "/recalls?q=crib&limit=20", { ["x-api-key"] = api_key })
end

function request()
  sent = sent + 1
  if sent % 2 == 1 then
    return health
  end
  return recalls
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then
    not_ok = not_ok + 1
  end
  if budget > 0 and answered >= budget then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("not_ok")
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "not_ok": %d, "connect": %d, '
      .. '"read": %d, "write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, failed, errors.connect, errors.read,
    errors.write, errors.timeout, latency:percentile(50), latency:percentile(99)
  ))
end
