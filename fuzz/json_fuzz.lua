-- json_fuzz.lua -- property: whole and streaming decodes agree.
-- json.decode(s) and a whole = true decoder fed s in chunks succeed or fail
-- together, with equal values; a document that is an array streams its
-- elements in top-level mode (with or without skip()), an object streams its
-- "data" array and the rest as the envelope; when json.decode fails, so do
-- they. Every failure is a json error object.
return function(core, H)
  local null = core.null

  local function check_path_modes(s, step, opts, ok, v)
    local is_array = ok and type(v) == "table" and getmetatable(v) == H.ARRAY_MT
    local is_obj = ok and type(v) == "table" and not is_array
    for _, path in ipairs { "data", false } do
      local d = core.decoder(H.copy(opts, { records = path or nil }))
      local okp, recs = pcall(H.feed, d, s, step)
      H.json_error(okp, recs, "records=" .. tostring(path))
      local want
      if is_array then want = v
      elseif is_obj and path and (v.data == nil or v.data == null) then want = setmetatable({}, H.ARRAY_MT)
      elseif is_obj and path and getmetatable(v.data) == H.ARRAY_MT then want = v.data end
      if not ok and okp then error("streaming accepts what json.decode refuses", 0) end
      if want and not okp then error("streaming refuses records: " .. tostring(recs), 0) end
      if want and not H.same(setmetatable(recs, H.ARRAY_MT), want) then
        error("streamed records differ (records=" .. tostring(path) .. ")", 0)
      end
      if want and is_obj then
        local env = H.copy(v)
        env.data = nil
        if not H.same(d:envelope(), env) then error("the envelope differs", 0) end
      end
    end
    if is_array then
      local oks, half = pcall(H.feed, core.decoder(opts), s, step, true)
      if not oks then error("skip() failed where next() succeeds: " .. tostring(half), 0) end
      if #half ~= math.floor(#v / 2) then error("skip() lost records", 0) end
      for i = 1, #half do
        if not H.same(half[i], v[2 * i]) then error("skip() lost its place", 0) end
      end
    end
  end

  return function(s, flags)
    local step = 1 + flags % 17
    local opts = H.opts(flags)
    local ok1, v = pcall(core.json_decode, s, opts)
    H.json_error(ok1, v, "json.decode")
    local ok2, recs = pcall(H.feed, core.decoder(H.copy(opts, { whole = true })), s, step)
    H.json_error(ok2, recs, "decoder")
    if ok1 ~= ok2 then
      error("whole and streaming disagree: " .. tostring(ok1 and recs or v), 0)
    end
    if ok1 and (#recs ~= 1 or not H.same(v, recs[1])) then
      error("whole and streaming values differ", 0)
    end
    check_path_modes(s, step, opts, ok1, v)
  end
end
