-- wrk script: POST one Alertmanager webhook body (payload version 4) with a
-- bearer token. Set PIDWARDEN_TOKEN and PIDWARDEN_PAYLOAD (a file).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("PIDWARDEN_TOKEN")
local f = assert(io.open(os.getenv("PIDWARDEN_PAYLOAD"), "r"))
wrk.body = f:read("*a")
f:close()

local codes = {}
response = function(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

done = function(summary, latency, requests)
  io.write(string.format("requests/s: %.0f\n", summary.requests / (summary.duration / 1e6)))
  io.write(string.format("latency p50 %.2f ms, p99 %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
  io.write(string.format("non-2xx: %d, socket errors: %d\n", summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
