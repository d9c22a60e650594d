--- ConverseIQ public API v1 (seed 002): workspace, contacts, chats and
-- messages, team. `x-api-key`; lists are `{data,page,limit,pages,total}`
-- envelopes paged with `page` + `limit` (1..100).
-- @module converse.converseiq
local vendor = require "converse.vendor"

local M = {}

M.BASE_URL = "https://api.converseiq.com.au/public/v1"
M.MAX_LIMIT = 100
local SENDER = { "agent", "bot", "contact" }

local ConverseIQ = vendor.define {
  name = "converseiq",
  endpoints = {
    workspace       = { "GET",    "/workspace" },
    me              = { "GET",    "/workspace/me" },
    contacts        = { "LIST",   "/contact" },
    search_contacts = { "LIST",   "/contact/search", { query_arg = "email", required = { "email" } } },
    contact         = { "GET",    "/contact/{id}" },
    create_contact  = { "POST",   "/contact" },
    update_contact  = { "PUT",    "/contact/{id}" },
    delete_contact  = { "DELETE", "/contact/{id}", { returns_true = true } },
    chats           = { "LIST",   "/chat" },
    chat            = { "GET",    "/chat/{id}" },
    chat_messages   = { "LIST",   "/chat/{id}/message" },
    chat_message    = { "GET",    "/chat/{id}/message/{message_id}" },
    start_chat      = { "POST",   "/chat", { required = { "channel", "message" }, one_of = SENDER } },
    send_message    = { "POST",   "/chat/{id}/message", { required = { "message" }, one_of = SENDER } },
    update_chat     = { "PUT",    "/chat/{id}" },
    delete_chat     = { "DELETE", "/chat/{id}", { returns_true = true } },
    team            = { "LIST",   "/team" },
    team_member     = { "GET",    "/team/{id}" },
  },
}

function ConverseIQ:_list(_, q)
  local limit = vendor.take_size(q, "limit", M.MAX_LIMIT, M.MAX_LIMIT)
  local first = q.page or 1
  q.page = nil
  return {
    style = "page", query = q, records = "data", total_pages = "pages",
    page_param = "page", size_param = "limit", page_size = limit, first_page = first,
    concurrency = self.options.concurrency or 4,
  }
end

M.class = ConverseIQ

--- Create a ConverseIQ client.
-- @tparam table opts `api_key`, `base_url` (default https://api.converseiq.com.au/public/v1),
--   `concurrency` (pages in flight, default 4), every converse.client option
function M.new(opts)
  vendor.check_new("converseiq", opts)
  return vendor.new(ConverseIQ, opts, vendor.client_options(opts, { base_url = M.BASE_URL },
    { header = "x-api-key", value = opts.api_key }))
end

return M
