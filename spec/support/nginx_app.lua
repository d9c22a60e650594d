--- Inside nginx, for spec/nginx_spec.lua: handlers that check what only
-- nginx has (phases, workers, the event loop, lua_ssl_*). `vendors()` also
-- runs standalone, so both transports page every vendor the same way.
-- Configuration comes from `nginx_spec_config` (support/nginx.lua).
-- @module nginx_app
-- luacheck: globals ngx
local converse = require "converse"
local core     = require "converse.core"
local json     = require "converse.mock.json"

local M = {}

local KEY = "k-nginx-spec"

local function config() return require "nginx_spec_config" end

local function reply(t)
  ngx.header["Content-Type"] = "application/json"
  ngx.say(json.encode(t))
end

local function now()
  ngx.update_time()
  return ngx.now()
end

-- ---- every vendor, paged (standalone or inside nginx) -------------------------

-- The records of a pager as { count, fp }: a fingerprint of their JSON
-- (sorted keys; integers beyond 2^53 as strings on every Lua).
local function digest(pager)
  local recs = pager:collect()
  local text = core.json_encode(recs, { sort_keys = true }):gsub('"(%-?%d+)"', "%1")
  return { count = #recs, fp = core.fingerprint(text) }
end

--- Page every list method of every vendor against the mock at `base`.
function M.vendors(base, transport)
  local function opts(prefix, extra)
    local o = { base_url = base .. prefix, api_key = KEY, transport = transport, big_integers = "string" }
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end
  local out = {}
  local cz = converse.converz(opts("/converz/api/v1"))
  out.converz_calls = digest(cz:calls { n_per_page = 70 })
  out.converz_calls_filtered = digest(cz:calls { n_per_page = 25, campaign = { "Onboarding", "Upsell 🚀" },
                                                 columns = { "call_id", "campaign", "summary" } })
  out.converz_reps = digest(cz:reps { n_per_page = 5 })
  local ax = converse.agentx(opts("/agentx", { bot_name = "r3-218210", rate_limit = false }))
  out.agentx_conversations = digest(ax:conversations { start_time = 0, end_time = 4102444800, per_page = 30 })
  out.agentx_messages = digest(ax:messages { start_time = 0, end_time = 4102444800, per_page = 200 })
  local iq = converse.converseiq(opts("/converseiq/public/v1"))
  out.converseiq_contacts = digest(iq:contacts { limit = 7 })
  out.converseiq_chats = digest(iq:chats { limit = 10 })
  out.converseiq_team = digest(iq:team {})
  local cr = converse.converra(opts("/converra/api/v1", { plan = "enterprise" }))
  out.converra_agents = digest(cr:agents {})
  out.converra_conversations = digest(cr:conversations { limit = 9 })
  return out
end

function M.vendors_handler()
  reply(M.vendors(config().mock))
end

-- ---- phases ------------------------------------------------------------------------

local function client()
  return converse.client { base_url = config().mock .. "/converz/api/v1",
                           auth = { header = "X-API-Key", value = KEY } }
end

--- Try a request in this phase; the error message, or "ok".
function M.try(built)
  local ok, err = pcall(function() return (built or client()):get("/reps", { query = { n_per_page = 1 } }) end)
  if ok then return "ok" end
  return (converse.is_error(err) and err.kind .. ": " or "") .. tostring(err.message or err)
end

function M.record(phase, built)
  ngx.shared.results:set(phase, M.try(built))
end

--- init_by_lua: a client built here (used in later phases), and a try.
function M.init()
  M.built = client()
  M.record("init", M.built)
end

--- /auto: the client built in init_by_lua, used in a content handler and a timer.
function M.auto()
  local c = M.built
  local body = c:get("/reps", { query = { n_per_page = 2 } })
  ngx.shared.results:set("timer", "waiting")
  assert(ngx.timer.at(0, function() M.record("timer", c) end))
  while ngx.shared.results:get("timer") == "waiting" do ngx.sleep(0.01) end
  reply { transport = tostring(c.transport), records = #body, timer = ngx.shared.results:get("timer") }
end

function M.results()
  local out = {}
  for _, k in ipairs(ngx.shared.results:get_keys(0)) do out[k] = ngx.shared.results:get(k) end
  reply(out)
end

--- /curl: libcurl inside nginx, asked for explicitly (it blocks the worker).
function M.curl()
  local c = converse.client { base_url = config().mock .. "/converz/api/v1", transport = "curl",
                              auth = { header = "X-API-Key", value = KEY } }
  local body = c:get("/reps", { query = { n_per_page = 3 } })
  reply { transport = tostring(c.transport), records = #body }
end

-- ---- the rate limit shared by the workers -----------------------------------------------

--- init_worker_by_lua: every worker waits for /rate's go, then makes its requests.
function M.rate_worker()
  local dict = ngx.shared.results
  local done = 0
  local function loop(premature)
    if premature then return end
    while not ngx.worker.exiting() do
      local gen, mode = (dict:get("rate:go") or ""):match("^(%d+):(%a+)$")
      gen = tonumber(gen)
      if gen and gen > done then
        done = gen
        local c = converse.client {
          base_url = config().mock .. "/converz/api/v1", auth = { header = "X-API-Key", value = KEY },
          headers = { ["X-Worker"] = ngx.worker.pid(), ["X-Gen"] = gen },
          rate_limit = { limit = 4, window = 0.5,
                         shared = mode == "shared" and "rate" or mode == "redis" and config().redis or nil },
        }
        local ok, err = pcall(function()
          for _ = 1, 8 do c:get("/reps", { query = { n_per_page = 1 } }) end
        end)
        if not ok then dict:set("rate:error:" .. gen, tostring(err)) end
        dict:incr("rate:done:" .. gen, 1, 0)
      end
      ngx.sleep(0.005)
    end
  end
  assert(ngx.timer.at(0, loop))
end

--- /pause: a 429 pause recorded by one client's shared limiter holds for
-- another client with the same key (and not for another key).
function M.pause()
  local function limiter(key)
    return converse.client { base_url = config().mock, auth = { header = "X-API-Key", value = key },
                             rate_limit = { per_second = 100, shared = "rate" } }.limiter
  end
  local a, b, other = limiter("key-1"), limiter("key-1"), limiter("key-2")
  a:pause("/paused", 2, core.now())
  local wait, paused = b:take("/paused", core.now())
  local owait = other:take("/paused", core.now())
  reply { wait = wait, paused = paused, other = owait, name = tostring(a) }
end

--- /redis_down?port=N: a shared Redis budget whose Redis does not answer
-- fails closed (RATE_LIMIT_UNAVAILABLE) after fail_after; nothing is sent.
function M.redis_down()
  local c = converse.client { base_url = config().mock, auth = { header = "X-API-Key", value = KEY }, retries = 0,
                              rate_limit = { per_second = 5, shared = "redis://127.0.0.1:" .. ngx.var.arg_port } }
  c.limiter.fail_after = 0.5
  local t0 = now()
  local ok, err = pcall(c.get, c, "/converz/api/v1/reps")
  reply { ok = ok, code = type(err) == "table" and err.code or tostring(err),
          retryable = type(err) == "table" and err.retryable or nil, waited = now() - t0 }
end

--- /rate?mode=shared|redis|local: start every worker's requests, wait for them.
function M.rate()
  local dict = ngx.shared.results
  local gen = dict:incr("rate:gen", 1, 0)
  dict:set("rate:go", gen .. ":" .. ngx.var.arg_mode)
  local t0 = now()
  while (dict:get("rate:done:" .. gen) or 0) < M.WORKERS and now() - t0 < 30 do ngx.sleep(0.01) end
  reply { gen = gen, done = dict:get("rate:done:" .. gen) or 0, error = dict:get("rate:error:" .. gen) }
end
M.WORKERS = 2

-- ---- the event loop stays free --------------------------------------------------------

--- /sync: page every Converz call of the (big) mock; time it.
function M.sync()
  local cz = converse.converz { base_url = config().big .. "/converz/api/v1", api_key = KEY,
                                big_integers = "string", transport = ngx.var.arg_transport }
  local t0, n = now(), 0
  for _ in cz:calls { n_per_page = tonumber(ngx.var.arg_page) or 20000 } do n = n + 1 end
  reply { records = n, start = t0, finish = now(), transport = tostring(cz.client.transport) }
end

--- /abandon: leave a pager with a page in flight, without close().
function M.abandon()
  local api = client()
  local n = 0
  for _ in api:paginate("/calls", { style = "page", size_param = "n_per_page", page_size = 10 }) do
    n = n + 1
    if n == 3 then break end
  end
  reply { records = n }
end

-- ---- TLS ----------------------------------------------------------------------------

--- /tls_*: a request to the TLS server with nginx's trust settings.
function M.tls(opts)
  local o = { base_url = opts and opts.url or config().tls, retries = 0 }
  opts = opts or {}
  opts.url = nil
  for k, v in pairs(opts) do o[k] = v end
  local ok, res = pcall(function()
    return converse.client(o):get("/data")
  end)
  if ok then return reply { ok = true, records = #res } end
  reply { ok = false, kind = res.kind, message = res.message, retryable = res.retryable,
          attempts = res.attempts }
end

-- ---- converse.safe ------------------------------------------------------------------

function M.safe()
  local safe = require "converse.safe"
  local api = safe.client { base_url = config().mock .. "/converz/api/v1",
                            auth = { header = "X-API-Key", value = KEY }, retries = 0 }
  local body, err = api:get("/nothing-here")
  local ok, perr = pcall(function()
    for _ in api:paginate("/nothing-here", { style = "none" }) do end
  end)
  reply { body = body == nil, status = err.status, kind = err.kind, pager_raised = not ok,
          pager_status = perr.status }
end

return M
