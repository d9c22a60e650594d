--- Converra REST API v1 (seed 003): agents, optimizations, conversations,
-- insights, benchmarks, settings, account, usage, webhooks.
-- `Authorization: Bearer`; per-plan rate limits; `{"error":{code,message}}`
-- errors. List envelopes are not documented, so lists accept a bare array,
-- `{data=[...]}` with page/limit/total/pages, or `{data=[...], next_cursor|cursor,
-- has_more}` (pager style "auto"); `list = {...}` overrides the paging options.
-- @module converse.converra
local vendor = require "converse.vendor"
local usage  = vendor.usage

local pairs = pairs

local M = {}

M.BASE_URL = "https://converra.ai/api/v1"
M.PLANS = {
  free = { per_minute = 60 },
  pro = { per_minute = 300 },
  enterprise = false,          -- custom: no default limit, pass rate_limit
}

local Converra = vendor.define {
  name = "converra",
  endpoints = {
    agents                  = { "LIST",  "/agents" },
    agent                   = { "GET",   "/agents/{id}" },
    create_agent            = { "POST",  "/agents" },
    update_agent            = { "PATCH", "/agents/{id}" },
    agent_insights          = { "GET",   "/agents/{id}/insights" },
    regenerate_agent_insights = { "POST", "/agents/{id}/insights/regenerate", { optional_body = true } },
    step_failures           = { "GET",   "/agents/{id}/step-failures" },
    optimizations           = { "LIST",  "/optimizations" },
    optimization            = { "GET",   "/optimizations/{id}" },
    trigger_optimization    = { "POST",  "/optimizations" },
    optimization_variants   = { "GET",   "/optimizations/{id}/variants" },
    apply_optimization      = { "POST",  "/optimizations/{id}/apply", { optional_body = true } },
    stop_optimization       = { "POST",  "/optimizations/{id}/stop", { optional_body = true } },
    conversations           = { "LIST",  "/conversations" },
    conversation            = { "GET",   "/conversations/{id}" },
    log_conversation        = { "POST",  "/conversations" },
    conversation_insights   = { "GET",   "/conversations/{id}/insights" },
    regenerate_conversation_insights =
                              { "POST",  "/conversations/{id}/insights/regenerate", { optional_body = true } },
    benchmarks              = { "LIST",  "/benchmarks" },
    benchmark               = { "GET",   "/benchmarks/{id}" },
    create_benchmark        = { "POST",  "/benchmarks" },
    bulk_benchmarks         = { "POST",  "/benchmarks/bulk", { required = { "action", "jobIds" } } },
    settings                = { "GET",   "/settings" },
    update_settings         = { "PATCH", "/settings" },
    account                 = { "GET",   "/account" },
    usage                   = { "GET",   "/usage" },
    webhooks                = { "LIST",  "/webhooks" },
    create_webhook          = { "POST",  "/webhooks" },
    delete_webhook          = { "DELETE", "/webhooks/{id}", { returns_true = true } },
  },
}

function Converra:_list(_, q)
  local o = { style = "auto", query = q, records = "data", page_param = "page",
              size_param = "limit", page_size = 100, cursor_param = "cursor",
              cursor_field = "cursor", total_pages = "pages" }
  for k, v in pairs(self.options.list or {}) do o[k] = v end
  if q.limit ~= nil then o.page_size = vendor.take_size(q, "limit") end
  if q.page ~= nil then o.first_page, q.page = q.page, nil end
  return o
end

M.class = Converra

--- Create a Converra client.
-- @tparam table opts `api_key` (sent as a Bearer token), `plan` ("free" default,
--   "pro", "enterprise") for the default rate limit, `base_url`, `list` (paging
--   options overriding the envelope detection), every converse.client option
function M.new(opts)
  vendor.check_new("converra", opts)
  local plan = opts.plan or "free"
  if M.PLANS[plan] == nil then
    usage("converse.converra: plan must be \"free\", \"pro\" or \"enterprise\"")
  end
  local defaults = { base_url = M.BASE_URL, rate_limit = M.PLANS[plan] or nil }
  return vendor.new(Converra, opts, vendor.client_options(opts, defaults,
    { bearer = opts.api_key }))
end

return M
