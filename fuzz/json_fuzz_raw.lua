-- json_fuzz_raw.lua -- property: raw mode agrees with table mode.
-- With the same options and chunks, a raw decoder succeeds iff a table
-- decoder does, with the same error message and offset when they fail; each
-- raw record holds no raw newline, tab or CR and json.decode gives back the
-- table-mode record; with whole = true the text is the input minified.
return function(core, H)
  local function compare(s, step, o, mode)
    local ok1, t = pcall(H.feed, core.decoder(o), s, step)
    H.json_error(ok1, t, mode .. " table mode")
    local ok2, r = pcall(H.feed, core.decoder(H.copy(o, { raw = true })), s, step)
    H.json_error(ok2, r, mode .. " raw mode")
    if ok1 ~= ok2 then
      error(mode .. ": raw and table modes disagree: " .. tostring(ok1 and r or t), 0)
    end
    if not ok1 then
      if t.message ~= r.message or t.offset ~= r.offset then
        error(mode .. ": raw error '" .. r.message .. "' for '" .. t.message .. "'", 0)
      end
      return
    end
    if #t ~= #r then error(mode .. ": raw mode gave " .. #r .. " records, not " .. #t, 0) end
    for i = 1, #t do
      if type(r[i]) ~= "string" or r[i]:find("[\n\r\t]") then error(mode .. ": bad raw record", 0) end
      local okd, v = pcall(core.json_decode, r[i], { big_integers = o.big_integers, max_depth = 10000 })
      if not okd then error(mode .. ": raw record does not decode: " .. tostring(v), 0) end
      if not H.same(t[i], v) then error(mode .. ": raw record decodes to another value", 0) end
    end
    if o.whole and r[1] ~= H.minify(s) then error("whole raw text is not the input minified", 0) end
  end

  return function(s, flags)
    local step = 1 + flags % 17
    local opts = H.opts(flags, true)
    compare(s, step, H.copy(opts, { whole = true }), "whole")
    compare(s, step, H.copy(opts, { records = "data" }), "records=data")
    compare(s, step, opts, "top-level array")
  end
end
