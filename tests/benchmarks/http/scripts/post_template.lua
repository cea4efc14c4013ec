-- POST a JSON body made from a template file for each request:
--   {n}   a random integer in [0, max): which generated subject the request is about;
--   {seq} a string unique to this request in this run (tag, then a counter): fresh records.
-- wrk -s post_template.lua URL -- /path/to/template.json MAX TAG
local template, max, tag
local counter = 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  template = file:read("*a")
  file:close()
  max = tonumber(args[2])
  tag = args[3]
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  math.randomseed(os.time())
end

function request()
  counter = counter + 1
  local seq = tag .. "-" .. counter
  local body = template:gsub("{n}", tostring(math.random(0, max - 1))):gsub("{seq}", seq)
  return wrk.format(nil, nil, nil, body)
end
