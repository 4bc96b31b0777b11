-- The soak's request mix (benches/soak/run.sh), per 20 requests of a thread:
--   8 listing queries, 6 product GETs, 4 POST /CartItem/ (one session per 20 requests),
--   1 checkout of that session's cart, 1 restock (PATCH a product's stock back up).
-- Every request carries SOAK_AUTH (Authorization header). Responses are counted per kind and
-- status (one connection per thread: see response()); done() prints "STATUS <kind> <code>
-- <count>" lines for run.sh.
local auth = os.getenv("SOAK_AUTH")
local categories = { "electronics", "books", "toys", "home", "garden", "sports", "clothing",
                     "beauty", "automotive", "grocery" }
local listings = {
  "/Product/?categoryId=%s&inStock=true&limit=20",
  "/Product/?categoryId=%s&sort=price&limit=20",
  "/Product/?price=lt=100&inStock=true&limit(20)",
  "/Product/?categoryId=%s&select(name,price,stockQuantity)&limit=40",
}
local threads = {}
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  last_kind = nil
  statuses = {}
  math.randomseed(id * 7919 + os.time())
end

local function product()
  return string.format("prod-%05d", math.random(1, 300))
end

local function headers(json)
  local h = {}
  if auth ~= nil and auth ~= "" then h["Authorization"] = auth end
  if json then h["Content-Type"] = "application/json" end
  return h
end

request = function()
  n = n + 1
  local slot = n % 20
  local session = string.format("soak-%d-%d", id, math.floor(n / 20))
  local kind, method, path, body
  if slot < 8 then
    kind, method = "listing", "GET"
    local t = listings[(n % #listings) + 1]
    path = string.format(t, categories[math.random(1, #categories)])
  elseif slot < 14 then
    kind, method, path = "get", "GET", "/Product/" .. product()
  elseif slot < 18 then
    kind, method, path = "add", "POST", "/CartItem/"
    body = string.format('{"productId":"%s","sessionId":"%s","quantity":1}', product(), session)
  elseif slot == 18 then
    kind, method, path = "checkout", "POST", "/Cart/" .. session .. "/checkout"
  else
    kind, method, path = "restock", "PATCH", "/Product/" .. product()
    body = '{"stockQuantity":100000,"inStock":true}'
  end
  last_kind = kind
  return wrk.format(method, path, headers(body ~= nil), body)
end

-- run.sh gives each wrk thread one connection (-t N -c N), so a thread's responses follow its
-- requests one for one: the last request's kind is the response's.
response = function(status, headers, body)
  local key = (last_kind or "?") .. " " .. status
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    for k, v in pairs(s) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write(string.format("STATUS %s %d\n", k, v)) end
  io.write(string.format("LATENCY p50_ms %.2f p99_ms %.2f max_ms %.2f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("ERRORS connect %d read %d write %d timeout %d status %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, summary.errors.status))
end
