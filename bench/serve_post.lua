-- wrk script for bench/bench_serve.py: POSTs pre-generated JSON bodies in turn.
--
-- LEADLANG_BENCH_BODIES names a file of bodies, one per line (JSON has no raw newline).
-- Every `@@` in a body is replaced by an id unique to this request (thread, request, place),
-- so each event carries its own `messageId`, as a Segment client sends, and none is
-- deduplicated away. LEADLANG_BENCH_AUTH is the Authorization header. `done` prints one
-- line `BENCHJSON {...}` that the bench reads.

local bodies = {}
local count = 0
local tid = 0
local headers = {}
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = os.getenv("LEADLANG_BENCH_AUTH")
  local file = assert(io.open(os.getenv("LEADLANG_BENCH_BODIES"), "r"))
  for line in file:lines() do
    if #line > 0 then
      local parts = {}
      local start = 1
      while true do
        local i, j = string.find(line, "@@", start, true)
        if not i then break end
        table.insert(parts, string.sub(line, start, i - 1))
        start = j + 1
      end
      table.insert(parts, string.sub(line, start))
      table.insert(bodies, parts)
    end
  end
  file:close()
end

function request()
  count = count + 1
  local parts = bodies[(count % #bodies) + 1]
  local prefix = "w" .. tid .. "-" .. count .. "-"
  local out = {}
  for i = 1, #parts - 1 do
    out[#out + 1] = parts[i]
    out[#out + 1] = prefix .. i
  end
  out[#out + 1] = parts[#parts]
  return wrk.format("POST", nil, headers, table.concat(out))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
