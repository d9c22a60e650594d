-- json_fuzz_roundtrip.lua -- property: decode -> encode -> decode gives the
-- same value (deep: integer vs float subtype on 5.3+, the sign of zero, the
-- array marker; NaN never appears), and encoding is stable. Only an
-- infinity (from a number beyond the double range) may refuse to encode.
-- The input's bytes, read as doubles and int64s (5.3+), round-trip too.
return function(core, H)
  local function roundtrip(v, sort, big)
    local ok, t = pcall(core.json_encode, v, { sort_keys = sort, max_depth = 10000 })
    if not ok then
      if H.has_inf(v) and tostring(t.message):find("Infinity") then return end
      error("cannot encode a decoded value: " .. tostring(t), 0)
    end
    local ok2, w = pcall(core.json_decode, t, { max_depth = 10000, big_integers = big })
    if not ok2 then error("cannot decode the encoder's output: " .. tostring(w) .. " in " .. t, 0) end
    if not H.same(v, w) then error("round trip changed the value: " .. t, 0) end
    if sort and core.json_encode(w, { sort_keys = true, max_depth = 10000 }) ~= t then
      error("encoding is not stable: " .. t, 0)
    end
  end

  local function numbers(s)
    if not string.unpack then return end
    local nums = setmetatable({}, H.ARRAY_MT)
    for i = 1, #s - 7, 8 do
      local d, n = string.unpack("<d", s, i), string.unpack("<i8", s, i)
      if d == d and d ~= math.huge and d ~= -math.huge then nums[#nums + 1] = d end
      nums[#nums + 1] = n
    end
    roundtrip(nums, false)
  end

  return function(s, flags)
    local opts = H.opts(flags)
    local ok, v = pcall(core.json_decode, s, opts)
    H.json_error(ok, v, "json.decode")
    if ok then roundtrip(v, flags % 2 == 1, opts.big_integers) end
    numbers(s)
  end
end
