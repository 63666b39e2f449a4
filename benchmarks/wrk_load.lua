-- The HTTP benchmark's load (benchmarks/http.py runs it with wrk).
--
-- Each connection alternates GET /health and an authenticated GET /recalls.
-- Every answer other than 200 is an error. A thread stops after its share of
-- BENCH_MAX_REQUESTS answers, so a level is bounded in requests as well as in
-- time (-d). The key comes from the environment, never the command line, where
-- any local user could read it.
--
-- wrk itself never counts a request that gets no answer: --timeout applies only
-- to an answer that arrives, and a connection the server closes is reopened
-- without an error. So this script also reports what it sent and what is left
-- unanswered: beyond the one request each connection may have in flight when
-- the level ends, and all of a thread's requests in flight when that thread
-- had no answer for longer than BENCH_TIMEOUT_S (a server that stopped).

local api_key = os.getenv("BENCH_API_KEY")
local budget = tonumber(os.getenv("BENCH_MAX_PER_THREAD") or "0")
local in_flight = tonumber(os.getenv("BENCH_CONNECTIONS_PER_THREAD") or "0")
local timeout_s = tonumber(os.getenv("BENCH_TIMEOUT_S") or "0")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  -- wrk builds the first thread's first request once to check it, and never sends it.
  thread:set("checking", #threads == 1)
end

function init(args)
  sent, answered, not_ok = 0, 0, 0
  -- os.time() is in whole seconds; enough against a timeout of seconds.
  started, last_answer, stopped = os.time(), nil, nil
  health = wrk.format("GET", "/health")
  recalls = wrk.format("GET", "/recalls?q=crib&limit=20", { ["x-api-key"] = api_key })
end

function request()
  if checking then
    checking = false
    return health
  end
  sent = sent + 1
  if sent % 2 == 1 then
    return health
  end
  return recalls
end

function response(status, headers, body)
  answered = answered + 1
  last_answer = os.time()
  if status ~= 200 then
    not_ok = not_ok + 1
  end
  if budget > 0 and answered >= budget then
    stopped = os.time()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local failed, all_sent, unanswered = 0, 0, 0
  local now = os.time()
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("not_ok")
    local thread_sent = thread:get("sent")
    all_sent = all_sent + thread_sent
    local waiting = thread_sent - thread:get("answered")
    local quiet_since = thread:get("last_answer") or thread:get("started")
    -- Whole seconds on both sides: a difference above the timeout is a wait of
    -- more than the timeout.
    local stalled = (thread:get("stopped") or now) - quiet_since > timeout_s
    local excused = stalled and 0 or in_flight
    unanswered = unanswered + math.max(0, waiting - excused)
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "sent": %d, "unanswered": %d, "duration_us": %d, '
      .. '"not_ok": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d, '
      .. '"p50_us": %d, "p99_us": %d}\n',
    summary.requests, all_sent, unanswered, summary.duration, failed, errors.connect,
    errors.read, errors.write, errors.timeout, latency:percentile(50), latency:percentile(99)
  ))
end
