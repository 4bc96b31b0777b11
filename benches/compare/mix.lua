-- A mixed e-commerce load in one wrk script (benches/compare/run.sh):
--   70% browse a listing page   GET /Product/?categoryId=C&inStock=true&sort(+name)&limit(24)&select(id,name,price,imageUrl)
--   20% open a product page     GET /Product/prod-NNNNN
--    8% add to cart             POST /CartItem/  (4 adds per session)
--    2% check out               ours:   POST /Cart/<session>/checkout
--                               Harper: DELETE /CartItem/?sessionId=<session> (Harper has no
--                               checkout; deleting the session's cart is the nearest equivalent)
-- A checkout takes a session whose 4 adds were sent earlier (a queue); when none is ready yet,
-- that request is a product page instead.
-- env: MIX_TARGET=ours|harper, MIX_PRODUCTS=N (products loaded, default 1000).
-- Headers given with -H (the Authorization header for ours) go on every request.
local target = os.getenv("MIX_TARGET") or "ours"
local n_products = tonumber(os.getenv("MIX_PRODUCTS") or "1000")
local categories = { "electronics", "books", "clothing", "home", "garden", "sports", "toys",
  "beauty", "grocery", "automotive" }
local get_headers, post_headers
local run_id, adds, ready, ready_head = "", 0, {}, 1

function init(args)
  math.randomseed(os.time())
  run_id = string.format("mix-%d-%d", os.time(), math.random(1000000))
  get_headers, post_headers = {}, {}
  for k, v in pairs(wrk.headers) do
    get_headers[k] = v
    post_headers[k] = v
  end
  post_headers["Content-Type"] = "application/json"
end

local function product_page()
  return wrk.format("GET", string.format("/Product/prod-%05d", math.random(n_products)), get_headers)
end

request = function()
  local r = math.random(100)
  if r <= 70 then
    local c = categories[math.random(#categories)]
    return wrk.format("GET", "/Product/?categoryId=" .. c ..
      "&inStock=true&sort(+name)&limit(24)&select(id,name,price,imageUrl)", get_headers)
  elseif r <= 90 then
    return product_page()
  elseif r <= 98 then
    -- an in-stock product (load.py stocks product i when i % 4 ~= 0)
    local i = math.random(n_products)
    if i % 4 == 0 then i = i - 1 end
    local session = run_id .. "-" .. math.floor(adds / 4)
    adds = adds + 1
    if adds % 4 == 0 then ready[#ready + 1] = session end
    local body = string.format(
      '{"productId":"prod-%05d","sessionId":"%s","quantity":1,"addedAt":"2026-01-01T00:00:00Z"}',
      i, session)
    return wrk.format("POST", "/CartItem/", post_headers, body)
  else
    local session = ready[ready_head]
    if session == nil then return product_page() end
    ready[ready_head] = nil
    ready_head = ready_head + 1
    if target == "harper" then
      return wrk.format("DELETE", "/CartItem/?sessionId=" .. session, get_headers)
    end
    return wrk.format("POST", "/Cart/" .. session .. "/checkout", post_headers)
  end
end
