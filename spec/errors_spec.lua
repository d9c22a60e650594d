-- converse.errors: error objects, scrubbing, redaction, usage blame; no I/O.
local errors   = require "converse.errors"
local converse = require "converse"

describe("converse.errors", function()
  describe(".new and tostring", function()
    it("makes one readable line with kind, status, code, message, request and attempts", function()
      local e = errors.new { kind = "http", status = 503, code = "BUSY", message = "try\nlater",
                             method = "GET", url = "https://h/x?api_key=s3cr3t&a=1", attempts = 3 }
      assert.is_true(converse.is_error(e))
      assert.is_false(e.retryable)
      assert.are.equal("converse: http error 503 (BUSY): try\\x0alater "
        .. "[GET https://h/x?api_key=REDACTED&a=1] after 3 attempts", tostring(e))
    end)

    it("escapes C0, DEL and C1 control characters", function()
      local s = tostring(errors.new { kind = "http", message = "\27[31mred\7\127 \194\155x é" })
      assert.are.equal("converse: http error: \\x1b[31mred\\x07\\x7f \\u009bx é", s)
    end)
  end)

  describe(".scrub", function()
    local SECRET = "Key-ABCdef-123"
    it("removes a secret from every string field, in any letter case", function()
      local e = errors.new({ kind = "auth", message = "bad key " .. SECRET:upper(),
                             code = SECRET:lower(), url = "http://h/?k=" .. SECRET,
                             detail = { nested = "x" .. SECRET } }, { SECRET })
      assert.are.equal("bad key REDACTED", e.message)
      assert.are.equal("REDACTED", e.code)
      assert.are.equal("http://h/?k=REDACTED", e.url)
      assert.are.equal("xREDACTED", e.detail.nested)
    end)

    it("removes the percent-encoded form too", function()
      assert.are.equal("a=REDACTED", errors.scrub_string("a=p%2Bq%20r", { "p+q r" }))
    end)

    it("ignores secrets shorter than MIN_SECRET characters", function()
      assert.are.equal("network", errors.scrub_string("network", { "k" }))
    end)
  end)

  describe(".redact_url", function()
    it("redacts userinfo and secret-looking parameters", function()
      assert.are.equal("https://REDACTED@h/p?token=REDACTED&x=1",
        errors.redact_url("https://u:pw@h/p?token=t&x=1"))
      assert.are.equal("http://h/?Signature=REDACTED", errors.redact_url("http://h/?Signature=abc"))
    end)

    it("reads the authority up to the first / ? or #", function()
      assert.are.equal("http://127.0.0.2:18431#@127.0.0.1:18431/ok",
        errors.redact_url("http://127.0.0.2:18431#@127.0.0.1:18431/ok"))
    end)
  end)

  describe(".usage and .check", function()
    it("blames the caller outside the library", function()
      local ok, e = pcall(function() errors.check(1, "string", "path") end)
      assert.is_false(ok)
      assert.are.equal("usage", e.kind)
      assert.matches("errors_spec%.lua:%d+: bad argument 'path' %(string expected, got number%)", e.message)
      assert.are.equal("x", errors.check("x", "string", "path"))
    end)

    it("raise makes an error object with the given fields", function()
      local ok, e = pcall(errors.raise, "timeout", "slow", { attempts = 2 })
      assert.is_false(ok)
      assert.are.same({ "timeout", "slow", 2 }, { e.kind, e.message, e.attempts })
      assert.is_false(errors.is({}))
      assert.is_false(errors.is("x"))
    end)
  end)
end)
