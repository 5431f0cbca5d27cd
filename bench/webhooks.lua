-- wrk script: POST pre-signed CashPay webhooks, each request a different one.
--
--   wrk -t2 -c64 -d10s -s webhooks.lua http://127.0.0.1:PORT/cashpay/webhook \
--       -- BODIES THREADS [close]
--
-- BODIES is a file written by gen-bodies.py ("SIGNATURE<TAB>BODY" lines).
-- THREADS must equal wrk's -t: each thread takes every THREADS-th line, so
-- no two threads send the same webhook. With "close" every request says
-- "Connection: close" (a new TCP connection per webhook). All requests are
-- formatted once, in init(), before the clock starts; request() only hands
-- out the next one. done() prints one machine-readable RESULT line.

local threads = {}
local next_id = 0

function setup(thread)
        thread:set("tid", next_id)
        next_id = next_id + 1
        table.insert(threads, thread)
end

local requests = {}
local count = 0
local pos = 0
wraps = 0

function init(args)
        local path, nthreads, mode = args[1], tonumber(args[2]), args[3]
        if not path or not nthreads then
                error("usage: -- BODIES THREADS [close]")
        end
        local headers = { ["Content-Type"] = "application/json" }
        if mode == "close" then
                headers["Connection"] = "close"
        end
        local line_no = 0
        for line in io.lines(path) do
                if line_no % nthreads == tid then
                        local tab = line:find("\t", 1, true)
                        headers["X-CashPay-Signature"] = line:sub(1, tab - 1)
                        count = count + 1
                        requests[count] = wrk.format("POST", nil, headers, line:sub(tab + 1))
                end
                line_no = line_no + 1
        end
        if count == 0 then
                error("no requests for thread " .. tid .. " in " .. path)
        end
end

function request()
        pos = pos + 1
        if pos > count then
                -- Past here ids repeat and are answered "duplicate": the
                -- run needs a bigger BODIES file.
                pos = 1
                wraps = wraps + 1
        end
        return requests[pos]
end

function done(summary, latency, requests)
        local e = summary.errors
        local w = 0
        for _, t in ipairs(threads) do
                w = w + (tonumber(t:get("wraps")) or 0)
        end
        io.write(string.format(
                "RESULT requests=%d duration_us=%d non2xx=%d connect_err=%d read_err=%d " ..
                "write_err=%d timeouts=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d wraps=%d\n",
                summary.requests, summary.duration, e.status, e.connect, e.read, e.write,
                e.timeout, latency:percentile(50), latency:percentile(90),
                latency:percentile(99), latency:percentile(99.9), latency.max, w))
end
