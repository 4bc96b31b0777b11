-- GET /Product/<id> for ids drawn uniformly from load.py's prod-00001..prod-N (N from the
-- SCALE_N environment variable), so reads spread over the whole table rather than one hot record.
local n = tonumber(os.getenv("SCALE_N") or "1000")
math.randomseed(42)
request = function()
  return wrk.format("GET", string.format("/Product/prod-%05d", math.random(1, n)))
end
