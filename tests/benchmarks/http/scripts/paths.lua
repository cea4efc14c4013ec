-- GET one of the paths listed in a file, chosen at random for each request.
-- wrk -s paths.lua URL -- /path/to/paths.txt
local paths = {}

function init(args)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  math.randomseed(os.time())
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
