-- POST /CartItem/ with a seed-shaped body and no id: every request is a fresh insert.
-- Each request adds one unit for its own session (the storefront checks stock per session:
-- one fixed session would soon be refused with 409), cycling over the 1000 loaded products.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = string.format(
    '{"productId":"prod-%05d","sessionId":"bench-%d","quantity":1,"addedAt":"2026-01-01T00:00:00Z"}',
    (n % 1000) + 1, n)
  return wrk.format(nil, nil, nil, body)
end
