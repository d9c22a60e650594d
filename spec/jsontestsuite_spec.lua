-- JSONTestSuite (nst/JSONTestSuite) parsing cases from spec/fixtures/jsontestsuite (MIT, see its LICENSE):
-- y_* must be accepted, n_* rejected, i_* as documented in README "JSON
-- semantics". Each file is decoded whole, fed one byte at a time to a
-- streaming decoder, and fed whole to a raw-mode decoder; all must agree.
local converse = require "converse"
local json = converse.json

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."
local DIR = ROOT .. "/spec/fixtures/jsontestsuite/test_parsing/"

-- Implementation-defined cases we accept; every other i_* file is rejected:
-- numbers beyond the double range decode (to +-inf, 0, or the nearest float),
-- 500 nested arrays fit the default depth limit of 512. Invalid UTF-8, lone
-- surrogates, UTF-16 text and a byte order mark are rejected.
local ACCEPTED_I = {
  ["i_number_double_huge_neg_exp.json"] = true, ["i_number_huge_exp.json"] = true,
  ["i_number_neg_int_huge_exp.json"] = true, ["i_number_pos_double_huge_exp.json"] = true,
  ["i_number_real_neg_overflow.json"] = true, ["i_number_real_pos_overflow.json"] = true,
  ["i_number_real_underflow.json"] = true, ["i_number_too_big_neg_int.json"] = true,
  ["i_number_too_big_pos_int.json"] = true, ["i_number_very_big_negative_int.json"] = true,
  ["i_structure_500_nested_arrays.json"] = true,
}

-- RFC 8259 allows duplicate keys ("SHOULD be unique"); converse makes one
-- rule for every decoder: a duplicate key is a json error. These two y_
-- files are rejected on purpose.
local REJECTED_Y = {
  ["y_object_duplicated_key.json"] = true, ["y_object_duplicated_key_and_value.json"] = true,
}

local function files()
  local list = {}
  local p = io.popen('ls "' .. DIR .. '" 2>/dev/null')
  for name in p:lines() do
    if name:match("%.json$") then list[#list + 1] = name end
  end
  p:close()
  table.sort(list)
  return list
end

local function read(name)
  local f = assert(io.open(DIR .. name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function whole(s)
  local ok, err = pcall(json.decode, s)
  if not ok then assert.is_true(converse.is_error(err) and err.kind == "json", tostring(err)) end
  return ok
end

local function bytewise(s)
  local d = json.decoder { whole = true }
  local got = 0
  local ok, err = pcall(function()
    for i = 1, #s do
      d:feed(s:sub(i, i))
      while d:next() ~= nil do got = got + 1 end
    end
    d:finish()
    while true do
      local v, state = d:next()
      if v == nil then assert(state == "done") break end
      got = got + 1
    end
  end)
  d:close()
  if not ok then assert.is_true(converse.is_error(err) and err.kind == "json", tostring(err)) end
  return ok and got == 1
end

-- Raw mode, fed whole: accepted iff table mode accepts; the text it gives
-- decodes to the same value.
local function raw(s)
  local d = json.decoder { whole = true, raw = true }
  local ok, text = pcall(function()
    d:feed(s)
    d:finish()
    local t = d:next()
    assert(select(2, d:next()) == "done")
    return t
  end)
  d:close()
  if not ok then assert.is_true(converse.is_error(text) and text.kind == "json", tostring(text)) end
  if ok then assert.are.same(json.decode(s), json.decode(text)) end
  return ok
end

describe("JSONTestSuite", function()
  local list = files()

  it("is present beside the repository", function()
    assert.is_true(#list > 300, "no test files in " .. DIR)
  end)

  for _, name in ipairs(list) do
    local want
    if name:sub(1, 2) == "y_" then want = not REJECTED_Y[name]
    elseif name:sub(1, 2) == "n_" then want = false
    else want = ACCEPTED_I[name] or false end
    it((want and "accepts " or "rejects ") .. name, function()
      local s = read(name)
      assert.are.equal(want, whole(s), "whole-string decode")
      assert.are.equal(want, bytewise(s), "one byte at a time")
      assert.are.equal(want, raw(s), "raw mode")
    end)
  end
end)
