-- TLS against a real local nginx with a self-signed certificate: verification
-- is on by default, `ca_file` trusts a certificate, `insecure` skips the
-- check, and HTTP/2 is used where the server offers it.
local converse = require "converse"
local helper   = require "helper"
local raises   = helper.raises

describe("converse.client over TLS", function()
  local srv

  setup(function()
    srv = assert(helper.start_tls_server('[{"id":1},{"id":9007199254740993}]'))
  end)
  teardown(function() if srv then srv:stop() end end)

  it("verifies the server certificate by default, and does not retry a failure", function()
    local api = converse.client { base_url = srv.url, backoff = { base = 0.01, cap = 0.01 } }
    local err = raises(function() api:get("/data") end)
    assert.are.equal("network", err.kind)
    assert.is_false(err.retryable)
    assert.are.equal(1, err.attempts)
    assert.matches("certificate", err.message:lower())
  end)

  it("trusts a certificate given as ca_file", function()
    local api = converse.client { base_url = srv.url, ca_file = srv.cert }
    local body, res = api:get("/data")
    assert.are.equal(2, #body)
    assert.are.equal(200, res.status)
  end)

  it("skips verification with insecure = true", function()
    local api = converse.client { base_url = srv.url, insecure = true }
    assert.are.equal(1, api:get("/data")[1].id)
  end)

  it("speaks HTTP/2 when the server offers it", function()
    local api = converse.client { base_url = srv.url, ca_file = srv.cert }
    local _, res = api:get("/data")
    assert.are.equal("2", res.http_version)
  end)

  it("pages over TLS", function()
    local api = converse.client { base_url = srv.url, ca_file = srv.cert }
    local all = api:paginate("/data", { style = "none" }):collect()
    assert.are.equal(2, #all)
  end)

  it("reports a missing ca_file as a network error", function()
    local api = converse.client { base_url = srv.url, ca_file = "/nonexistent/ca.pem" }
    local err = raises(function() api:get("/data") end)
    assert.are.equal("network", err.kind)
    assert.is_false(err.retryable)
  end)
end)
