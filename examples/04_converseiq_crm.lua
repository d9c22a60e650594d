-- 4. ConverseIQ contacts into a CRM-like SQLite table, one row per e-mail
-- address. A function sink does the CRM's own upsert (keyed by the
-- lower-cased address, the newest update wins) in one transaction per
-- page; the job's checkpoint is written once that transaction committed.
--   CONVERSEIQ_KEY, CONVERSEIQ_URL (default: the mock), OUT
local converse = require "converse"
local sync     = require "converse.sync"
local driver   = require "luasql.sqlite3"

local MOCK = os.getenv("CONVERSE_MOCK") or "http://127.0.0.1:8080"
local OUT = os.getenv("OUT") or "build/examples"
os.execute(("mkdir -p '%s'"):format(OUT))

local iq = converse.converseiq {
  base_url = os.getenv("CONVERSEIQ_URL") or MOCK .. "/converseiq/public/v1",
  api_key  = os.getenv("CONVERSEIQ_KEY") or "demo-key",
}

local env = driver.sqlite3()
local db = assert(env:connect(OUT .. "/crm.db"))
assert(db:execute([[CREATE TABLE IF NOT EXISTS crm (email TEXT PRIMARY KEY, name TEXT, phone TEXT,
  company TEXT, city TEXT, contact_id TEXT, updated_at TEXT)]]))

local function sql(v)
  if v == nil or v == converse.null then return "NULL" end
  return "'" .. tostring(v):gsub("'", "''") .. "'"
end

local contacts, without_email = 0, 0
local summary = sync.run {
  source = sync.stream(iq, "contacts"),
  state = OUT .. "/crm.state.json",                -- a function sink keeps no state itself
  sink = sync.sink(function(records)
    assert(db:execute("BEGIN"))
    for _, c in ipairs(records) do
      contacts = contacts + 1
      local email = type(c.email) == "string" and c.email:lower():match("^%s*(.-)%s*$") or ""
      if email == "" then
        without_email = without_email + 1
      else
        assert(db:execute(([[INSERT INTO crm VALUES (%s, %s, %s, %s, %s, %s, %s)
          ON CONFLICT (email) DO UPDATE SET name = excluded.name, phone = excluded.phone,
            company = excluded.company, city = excluded.city, contact_id = excluded.contact_id,
            updated_at = excluded.updated_at
          WHERE excluded.updated_at >= crm.updated_at]]):format(sql(email), sql(c.name), sql(c.phone),
          sql(c.company), sql(c.city), sql(c.id), sql(c.updated_at))))
      end
    end
    assert(db:execute("COMMIT"))
  end, { upsert = true }),
}
local cur = assert(db:execute("SELECT count(*) FROM crm"))
local rows = cur:fetch()
cur:close()
db:close()
env:close()
print(("%d contacts in %d pages -> %d CRM rows (%d without an e-mail address) in %s/crm.db"):format(
  contacts, summary.pages, rows, without_email, OUT))
