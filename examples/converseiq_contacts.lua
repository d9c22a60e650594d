-- ConverseIQ: export contacts as CSV and make sure a VIP contact exists.
--   CONVERSEIQ_KEY, CONVERSEIQ_URL (default: the local mock on port 8080)
local converse = require "converse"

local iq = converse.converseiq {
  base_url = os.getenv("CONVERSEIQ_URL") or "http://127.0.0.1:8080/converseiq/public/v1",
  api_key  = os.getenv("CONVERSEIQ_KEY") or "demo-key",
}

local ws = iq:workspace()
print(("workspace %s (%s), owner %s"):format(ws.name, ws.timezone, iq:me().name))

local function csv(v)
  if v == nil or v == converse.null then return "" end
  v = tostring(v)
  if v:find('[",\n]') then v = '"' .. v:gsub('"', '""') .. '"' end
  return v
end

-- Every contact: the pager reads the {data,page,limit,pages,total}
-- envelope and fetches the remaining pages concurrently.
local cols = { "id", "name", "email", "phone", "city", "company" }
print(table.concat(cols, ","))
local n, no_email = 0, 0
for c in iq:contacts { limit = 50 } do
  n = n + 1
  if c.email == converse.null then no_email = no_email + 1 end
  if n <= 5 then
    local row = {}
    for i, k in ipairs(cols) do row[i] = csv(c[k]) end
    print(table.concat(row, ","))
  end
end
print(("... %d contacts, %d without an email"):format(n, no_email))

-- Upsert by email.
local email = "vip@example.org"
local found = iq:search_contacts(email):collect()
local vip = found[1] or iq:create_contact { name = "Very Important", email = email, company = "Acme" }
vip = iq:update_contact(vip.id, { description = "VIP since " .. os.date("!%Y") })
print(("contact %s <%s>: %s"):format(vip.name, vip.email, vip.description))

-- Greet them on the live-chat channel on behalf of the first agent.
local agent = iq:team { limit = 1 }:pages()().records[1]
local chat = iq:start_chat { channel = ws.channels[1].id, message = "Welcome aboard!",
                             agent = agent.id, contact = vip.id }
iq:update_chat(chat.id, { title = "VIP onboarding" })
print(("chat %s started by %s, %d message(s)"):format(chat.id, agent.name,
  #iq:chat_messages(chat.id):collect()))
