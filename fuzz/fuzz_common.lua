-- fuzz_common.lua -- helpers shared by the JSON fuzz properties (make fuzz)
-- and by the spec that replays their findings (spec/json_decode_spec.lua).
-- Portable to every Lua the project builds for (no bit operators, no goto).
--   local H = dofile("fuzz/fuzz_common.lua")(core)
return function(core)
  local H = {}
  local mtype = math.type
  local ARRAY_MT = getmetatable(core.json_decode("[]"))
  H.ARRAY_MT = ARRAY_MT

  --- Deep equality of decoded values: same types, integer vs float subtype
  -- (5.3+), the sign of zero, the array marker; NaN is never equal.
  function H.same(a, b)
    local ta = type(a)
    if ta ~= type(b) then return false end
    if ta == "number" then
      if a ~= a or b ~= b then return false end
      if mtype and mtype(a) ~= mtype(b) then return false end
      if a == 0 and b == 0 then return 1 / a == 1 / b end
      return a == b
    end
    if ta ~= "table" then return a == b end
    if getmetatable(a) ~= getmetatable(b) then return false end
    local n = 0
    for k, v in pairs(a) do
      n = n + 1
      if not H.same(v, rawget(b, k)) then return false end
    end
    for _ in pairs(b) do n = n - 1 end
    return n == 0
  end

  --- A failure must be a json error object with a message (and an offset
  -- unless it is the out-of-memory error).
  function H.json_error(ok, err, what)
    if ok then return end
    if type(err) ~= "table" or err.kind ~= "json" or type(err.message) ~= "string"
       or (err.offset == nil and err.code ~= "OUT_OF_MEMORY") then
      error((what or "?") .. ": not a json error object: " .. tostring(err), 0)
    end
  end

  --- Parser options from the flags byte (bits 5..7).
  function H.opts(flags, limits)
    local v = math.floor(flags / 32) % 8
    local o = ({ {}, { max_depth = 4 }, { big_integers = "string" }, { big_integers = "float" },
                 { max_string = 6 }, { max_depth = 2, max_string = 3 }, {}, {} })[v + 1]
    local t = {}
    for k, x in pairs(o) do t[k] = x end
    if limits and v == 6 then t.max_record = 24 end
    if limits and v == 7 then t.max_envelope = 40; t.max_record = 30 end
    return t
  end

  function H.copy(t, extra)
    local c = {}
    for k, v in pairs(t) do c[k] = v end
    for k, v in pairs(extra or {}) do c[k] = v end
    return c
  end

  --- Feed s to decoder d in chunks of `step` bytes (an empty chunk first),
  -- reading after two chunks of every three (the decoder may hold two);
  -- every record, in order; `skip_odd` skips records 1, 3, 5 ...
  function H.feed(d, s, step, skip_odd)
    local out, n = {}, 0
    local function drain()
      while true do
        n = n + 1
        local skip = skip_odd and n % 2 == 1
        local r, st
        if skip then r, st = d:skip() else r, st = d:next() end
        if r == nil then n = n - 1 return st end
        if not skip then out[#out + 1] = r end
      end
    end
    d:feed("")
    for i = 1, #s, step do
      d:feed(s:sub(i, i + step - 1))
      if math.floor((i - 1) / step) % 3 ~= 1 then drain() end
    end
    d:finish()
    local st = drain()
    if st ~= "done" then error("decoder ended with state " .. tostring(st), 0) end
    return out
  end

  --- s without the whitespace outside strings (s is valid JSON).
  function H.minify(s)
    local out, i, n, instr = {}, 1, #s, false
    while i <= n do
      local c = s:sub(i, i)
      if instr then
        if c == "\\" then out[#out + 1] = s:sub(i, i + 1); i = i + 1
        else out[#out + 1] = c; if c == '"' then instr = false end end
      elseif c == '"' then out[#out + 1] = c; instr = true
      elseif not c:find("^[ \t\r\n]$") then out[#out + 1] = c end
      i = i + 1
    end
    return table.concat(out)
  end

  function H.has_inf(v)
    if type(v) == "number" then return v == math.huge or v == -math.huge end
    if type(v) ~= "table" then return false end
    for _, x in pairs(v) do if H.has_inf(x) then return true end end
    return false
  end

  return H
end
