-- wrk script: POST /jobs with a new job name and one of 1000 repositories per request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
math.randomseed(os.time())

request = function()
  local n = math.random(1, 100000000)
  local body = string.format('{"name":"bench-%d","repo":"https://git.example.com/bench/r%d.git"}', n, n % 1000)
  return wrk.format(nil, "/jobs", nil, body)
end
