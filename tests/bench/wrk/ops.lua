-- One wrk script for every operation of tests/bench/run.sh, set by environment variables:
--   OP      create | get | list | token | delete | fixed | path
--   URL_PATH  for path: the request's path; "{id}" in it becomes a random id from IDS
--   SERVER  ingot | pb
--   AUTH    the Authorization header's value
--   IDS     a file of ids, one per line (get, token: picked at random)
--   COUNTS  create writes here how many each thread made; delete reads it and deletes exactly
--           those (ingot by username, PocketBase by the record id create chose)
--   REP     the repetition, so each run's users are new; PAGE  the list page size
-- done() prints one line: RESULT label=… ok=… errors=… seconds=… rps=… p50_ms=… p99_ms=…
local op, server = os.getenv("OP"), os.getenv("SERVER")
local auth, rep = os.getenv("AUTH"), tonumber(os.getenv("REP") or "1")
local page = os.getenv("PAGE") or "50"
local threads = {}

function setup(thread)
    thread:set("tid", #threads)
    table.insert(threads, thread)
end

local function pb_id(t, n) -- PocketBase record ids are 15 characters of [a-z0-9]
    return string.format("r%dt%02dn%09d", rep % 10, t, n)
end

local function name(t, n)
    return string.format("r%d-t%d-%d", rep, t, n)
end

function init(args)
    n, made, limit = 0, 0, nil
    ids = {}
    local file = os.getenv("IDS")
    if file and file ~= "" then
        for line in io.lines(file) do ids[#ids + 1] = line end
    end
    local counts = os.getenv("COUNTS")
    if op == "delete" then
        for line in io.lines(counts) do
            local t, c = line:match("(%d+) (%d+)")
            if tonumber(t) == tid then limit = tonumber(c) end
        end
        limit = limit or 0
    end
    headers = { ["Authorization"] = auth, ["Content-Type"] = "application/json" }
end

function request()
    local i = n
    n = n + 1
    if op == "create" then
        local body
        if server == "ingot" then
            body = string.format('{"username":"%s","fullName":"Run %d User %d"}', name(tid, i), rep, i)
            return wrk.format("POST", "/users", headers, body)
        end
        body = string.format('{"id":"%s","username":"%s","fullName":"Run %d User %d"}',
            pb_id(tid, i), name(tid, i), rep, i)
        return wrk.format("POST", "/api/collections/bench_users/records", headers, body)
    elseif op == "delete" then
        if server == "ingot" then
            return wrk.format("DELETE", "/users/" .. name(tid, i), headers)
        end
        return wrk.format("DELETE", "/api/collections/bench_users/records/" .. pb_id(tid, i), headers)
    elseif op == "get" or op == "token" then
        local id = ids[math.random(#ids)]
        if server == "ingot" then
            return wrk.format("GET", "/users/" .. id .. (op == "token" and "/token" or ""), headers)
        elseif op == "get" then
            return wrk.format("GET", "/api/collections/bench_users/records/" .. id, headers)
        end
        return wrk.format("POST", "/api/collections/bench_tokusers/impersonate/" .. id, headers,
            '{"duration":1800}')
    elseif op == "list" then
        if server == "ingot" then
            return wrk.format("GET", "/users?limit=" .. page, headers)
        end
        return wrk.format("GET", "/api/collections/bench_users/records?perPage=" .. page .. "&skipTotal=1", headers)
    elseif op == "path" then
        local path = os.getenv("URL_PATH")
        if #ids > 0 then path = path:gsub("{id}", ids[math.random(#ids)]) end
        return wrk.format("GET", path, headers)
    end
    return wrk.format("GET", "/healthz")
end

function response(status, hdrs, body)
    if status >= 200 and status < 300 then made = made + 1 end
    -- A delete run ends when this thread has deleted what its create run made.
    if op == "delete" and n >= limit then wrk.thread:stop() end
end

function done(summary, latency, requests)
    local ok = summary.requests - summary.errors.status
    local secs = summary.duration / 1e6
    local errors = summary.errors.status + summary.errors.connect + summary.errors.read
        + summary.errors.write + summary.errors.timeout
    -- A delete run that deleted everything its create run made stopped short of its time, and
    -- its rate (over the whole run) would be too low: it says so.
    local exhausted = 0
    if op == "delete" then
        exhausted = 1
        for _, t in ipairs(threads) do
            if t:get("n") < t:get("limit") then exhausted = 0 end
        end
    end
    io.write(string.format("RESULT label=%s ok=%d errors=%d seconds=%.2f rps=%.1f p50_ms=%.3f p99_ms=%.3f exhausted=%d\n",
        os.getenv("LABEL") or "run", ok, errors, secs, ok / secs,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, exhausted))
    local counts = os.getenv("COUNTS")
    if op == "create" and counts then
        local f = io.open(counts, "w")
        for _, t in ipairs(threads) do f:write(string.format("%d %d\n", t:get("tid"), t:get("made"))) end
        f:close()
    end
end
