-- wrk script for the benchmark's servers: wrk -t1 -cN -dS -s bench/wrk/keyturn.lua URL -- MODE [FILE [FIELD [OUT]]]
--
-- MODE get      requests as given on the command line (-H for headers)
-- MODE post     POST the JSON body in FILE (login)
-- MODE refresh  chained rotation: FILE holds one refresh token a line, one chain each. A request
--               takes the oldest waiting chain's newest token, sent as {"FIELD": token} (FIELD:
--               refresh_token for keyturn, refreshToken for the reference server), and the 200
--               answer's FIELD continues that chain, so no token is ever sent twice. A non-200
--               ends its chain, and so does a 200 without the field; both count as non-2xx. At
--               the end the chains still waiting (their newest token never sent) are written to
--               OUT, one a line, when given, so the caller can check each is still live.
--
-- With WRK_LIMITED=1 in the environment a 429 (keyturn's rate limit) is counted as "limited", not
-- as non-2xx; in refresh mode its chain is dropped (wrk does not say which request an answer is
-- for), so the token file then holds more chains than connections.
--
-- done() prints one JSON line: requests, non-2xx, limited, socket errors, duration, latency
-- percentiles, and how long the first answer took to come (a login's argon2id hash queue starts
-- empty).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function wall_us()
  -- wrk's Lua has no sub-second wall clock; this runs twice per run, never per request.
  local p = io.popen("date +%s%6N")
  local now = tonumber(p:read("*l"))
  p:close()
  return now
end

local function slurp(path)
  local f = assert(io.open(path, "r"))
  local text = f:read("*a")
  f:close()
  return text
end

function init(args)
  mode = args[1]
  field = args[3] or "refresh_token"
  out = args[4]
  ok, non2xx, lost, limited = 0, 0, 0, 0
  limited_ok = os.getenv("WRK_LIMITED") == "1"
  started_us, first_us = wall_us(), 0
  if mode == "post" or mode == "refresh" then
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
  end
  if mode == "post" then
    wrk.body = slurp(args[2])
  end
  -- The waiting chains, a queue: chains[head .. tail] (taking one is O(1) however many there are).
  chains, head, tail = {}, 1, 0
  if mode == "refresh" then
    for line in io.lines(args[2]) do
      if #line > 0 then
        tail = tail + 1
        chains[tail] = line
      end
    end
  end
  fixed = wrk.format()
end

function request()
  if mode ~= "refresh" then
    return fixed
  end
  if not checked then
    -- wrk calls request() once after init() to check what it returns, and sends nothing: no
    -- chain is spent on that call (wrk 4: thread 1 only; the benchmark runs one thread).
    checked = true
    return wrk.format(nil, nil, nil, '{"' .. field .. '":"unused"}')
  end
  local token = nil
  if head <= tail then
    token = chains[head]
    chains[head] = nil
    head = head + 1
  end
  if token == nil then
    lost = lost + 1 -- every chain ended: this request is refused and counted as non-2xx
    token = "ended"
  end
  return wrk.format(nil, nil, nil, '{"' .. field .. '":"' .. token .. '"}')
end

function response(status, headers, body)
  if first_us == 0 then
    first_us = wall_us() - started_us
  end
  if status >= 200 and status < 300 then
    if mode == "refresh" then
      -- keyturn's kt_rt_ tokens, or the reference's JWTs (base64url segments joined by dots)
      local token = string.match(body, '"' .. field .. '"%s*:%s*"([%w_%-%.]+)"')
      if token == nil then
        non2xx = non2xx + 1
        return
      end
      tail = tail + 1
      chains[tail] = token
    end
    ok = ok + 1
  elseif status == 429 and limited_ok then
    limited = limited + 1
  else
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local ok_all, bad_all, lost_all, limited_all, first = 0, 0, 0, 0, 0
  local waiting = {}
  for _, thread in ipairs(threads) do
    ok_all = ok_all + thread:get("ok")
    bad_all = bad_all + thread:get("non2xx")
    lost_all = lost_all + thread:get("lost")
    limited_all = limited_all + thread:get("limited")
    first = math.max(first, thread:get("first_us"))
    local path = thread:get("out")
    if path then
      local queue = thread:get("chains") or {}
      for i = thread:get("head"), thread:get("tail") do waiting[#waiting + 1] = queue[i] end
      local f = assert(io.open(path, "w"))
      f:write(table.concat(waiting, "\n"), "\n")
      f:close()
    end
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"ok":%d,"non_2xx":%d,"limited":%d,"ended_chains_requests":%d,"socket_errors":%d,' ..
    '"duration_us":%d,"first_answer_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, ok_all, bad_all, limited_all, lost_all, e.connect + e.read + e.write + e.timeout,
    summary.duration, first, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
