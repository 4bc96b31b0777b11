-- POST /CartItem/ with a seed-shaped body and no id: every request is a fresh insert.
-- Each request adds one unit for its own session (the storefront checks stock per session:
-- one fixed session would soon be refused with 409), cycling over the in-stock products.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
-- A run of its own: sessions never repeat across runs, so none outgrows its stock.
local run_id = string.format("%d-%d", os.time(), math.random(1000000))
request = function()
  n = n + 1
  -- load.py stocks product i when i % 4 ~= 0; pick only those.
  local i = (n % 1000) + 1
  if i % 4 == 0 then i = i - 1 end
  local body = string.format(
    '{"productId":"prod-%05d","sessionId":"bench-%s-%d","quantity":1,"addedAt":"2026-01-01T00:00:00Z"}',
    i, run_id, n)
  return wrk.format(nil, nil, nil, body)
end
