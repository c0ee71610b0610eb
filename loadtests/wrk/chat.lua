-- wrk script: POST a ~200-byte OpenAI chat request, plain or streamed.
--
--   BENCH_KEY=gnd_... wrk -t1 -c32 -d10s --latency -s loadtests/wrk/chat.lua \
--       http://127.0.0.1:8080/v1/chat/completions
--
-- Environment:
--   BENCH_KEY     bearer token sent as `Authorization: Bearer <key>` (falls back to
--                 GANDALF_BENCH_KEY; no header when neither is set)
--   BENCH_MODEL   model name in the body (default "bench-model")
--   BENCH_STREAM  "1" to send "stream": true (the server answers with SSE)
--
-- At the end it prints one line `BENCH_RESULT {...}` with exact counts and latency
-- percentiles in microseconds, for loadtests/bench.py to read.

local key = os.getenv("BENCH_KEY") or os.getenv("GANDALF_BENCH_KEY")
local model = os.getenv("BENCH_MODEL") or "bench-model"
local stream = os.getenv("BENCH_STREAM") == "1"

local body = '{"model":"' .. model .. '","messages":['
  .. '{"role":"system","content":"You are a helpful assistant."},'
  .. '{"role":"user","content":"Explain the theory of relativity in one sentence, please."}'
  .. '],"temperature":0.7'
if stream then
  body = body .. ',"stream":true'
end
body = body .. '}'

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

-- No response() callback on purpose: defining one makes wrk hand every response's
-- headers to Lua, which costs the load generator CPU.

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,'
      .. '"errors_connect":%d,"errors_read":%d,"errors_write":%d,'
      .. '"errors_status":%d,"errors_timeout":%d,'
      .. '"lat_mean_us":%.1f,"lat_max_us":%d,"lat_p50_us":%d,"lat_p90_us":%d,'
      .. '"lat_p99_us":%d,"lat_p999_us":%d}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
