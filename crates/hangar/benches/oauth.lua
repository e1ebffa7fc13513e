-- wrk script of hangar's OAuth benchmark (crates/hangar/benches/oauth.rs): POSTs one form per
-- request to BENCH_PATH with HTTP Basic client authentication, taking the token from a pool
-- file (one token per line). Each wrk thread takes every BENCH_THREADS-th line of the pool.
--
-- Environment:
--   BENCH_PATH     the endpoint path, e.g. /oauth/token
--   BENCH_POOL     the pool file
--   BENCH_FORM     the form with the token as `{token}`, e.g.
--                  grant_type=refresh_token&refresh_token={token}
--   BENCH_AUTH     the Authorization header value (Basic ...)
--   BENCH_THREADS  wrk's -t
--   BENCH_REUSE    1: tokens may be used many times (introspection) and are cycled;
--                  otherwise each is used once and the thread stops when its share is spent.
--
-- `done` prints one JSON line: requests counted, elapsed microseconds, responses other than
-- 200 (counted per thread by `response`), threads whose share of a single-use pool ran out
-- before the end (their figures are then not a full run: wrk still waits out -d), socket
-- errors, and latency percentiles (µs).

local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local n = tonumber(os.getenv("BENCH_THREADS"))
  tokens = {}
  local i = 0
  for line in io.lines(os.getenv("BENCH_POOL")) do
    if line ~= "" then
      if i % n == id then
        table.insert(tokens, line)
      end
      i = i + 1
    end
  end
  reuse = os.getenv("BENCH_REUSE") == "1"
  local form = os.getenv("BENCH_FORM")
  local from, to = string.find(form, "{token}", 1, true)
  form_head = string.sub(form, 1, from - 1)
  form_tail = string.sub(form, to + 1)
  path = os.getenv("BENCH_PATH")
  headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = os.getenv("BENCH_AUTH"),
  }
  next_token = 1
  bad = 0
  spent = false
end

function request()
  local token
  if reuse then
    token = tokens[((next_token - 1) % #tokens) + 1]
  else
    token = tokens[next_token]
    if token == nil then
      -- This thread's share is spent: stop its loop. The request returned here is never
      -- answered within the run (the loop ends first).
      if not spent then
        spent = true
        wrk.thread:stop()
      end
      token = "spent"
    end
  end
  next_token = next_token + 1
  return wrk.format("POST", path, headers, form_head .. token .. form_tail)
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local not_ok = 0
  local spent_threads = 0
  for _, thread in ipairs(threads) do
    not_ok = not_ok + thread:get("bad")
    if thread:get("spent") then
      spent_threads = spent_threads + 1
    end
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"not_ok":%d,"spent_threads":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, not_ok, spent_threads,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
