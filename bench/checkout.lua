-- wrk script: POST /charges on cashpayd's checkout listener, every request
-- with its own order_ref (so each one creates a charge at CashPay).
--
--   wrk -t2 -c64 -d10s -s checkout.lua http://127.0.0.1:PORT/charges [-- BEARER]
--
-- done() prints the RESULT line bench/lib.sh's report() reads.

local threads = {}
local next_id = 0

function setup(thread)
        thread:set("tid", next_id)
        next_id = next_id + 1
        table.insert(threads, thread)
end

local n = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
        if args[1] then
                headers["Authorization"] = "Bearer " .. args[1]
        end
        -- a run's refs are its own, should two runs share a database
        prefix = string.format("bench-%d-%d-", os.time(), tid)
end

function request()
        n = n + 1
        return wrk.format("POST", nil, headers, string.format(
                '{"order_ref":"%s%d","amount":%d,"currency":"YER","description":"Purchase of a watch"}',
                prefix, n, 1000 + n % 9000))
end

function done(summary, latency, requests)
        local e = summary.errors
        io.write(string.format(
                "RESULT requests=%d duration_us=%d non2xx=%d connect_err=%d read_err=%d " ..
                "write_err=%d timeouts=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d wraps=0\n",
                summary.requests, summary.duration, e.status, e.connect, e.read, e.write,
                e.timeout, latency:percentile(50), latency:percentile(90),
                latency:percentile(99), latency:percentile(99.9), latency.max))
end
