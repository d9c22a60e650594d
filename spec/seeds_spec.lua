-- Cross-check the vendor modules against the seed documents
-- (spec/fixtures/seeds/*.txt: the vendor API documents the project was
-- built from, kept in the repository): every constant, parameter name,
-- base URL and endpoint the library uses must appear in the vendor's own
-- document.
local helper = require "helper"
local converz    = require "converse.converz"
local agentx     = require "converse.agentx"
local converseiq = require "converse.converseiq"
local converra   = require "converse.converra"

local DIR = helper.ROOT .. "/spec/fixtures/seeds/"

local function read(name)
  local f = assert(io.open(DIR .. name, "rb"), "seed document " .. name .. " not found")
  local s = f:read("*a")
  f:close()
  return s
end

local function has(doc, text, what)
  assert.is_truthy(doc:find(text, 1, true), (what or "seed") .. " does not mention " .. text)
end

local function endpoints(class)
  local out = {}
  for name, ep in pairs(class.endpoints) do
    out[#out + 1] = { name = name, method = ep[1] == "LIST" and "GET" or ep[1], path = ep[2] }
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

describe("seed documents", function()
  describe("000 Converz", function()
    local doc = read("000_572b238388d4898b.txt")

    it("has the base URL, header and paging parameters the module uses", function()
      has(doc, "https://yourdomain.converz.co/api/v1")
      local c = converz.new { domain = "yourdomain", api_key = "k" }
      has(doc, c.client.base_url)
      has(doc, "X-API-Key")
      for _, p in ipairs { "n_per_page", "page", "start_date", "end_date", "after", "before", "metric",
                           "rep_id", "vendor", "campaign", "subcampaign", "department",
                           "vendor_call_id", "columns" } do
        local listed = doc:find("\n" .. p .. "integer") or doc:find("\n" .. p .. "string")
          or doc:find("\n" .. p .. "Array of strings")
        assert.is_truthy(listed, "seed 000's query list does not name " .. p)
      end
      has(doc, "max:" .. converz.MAX_PAGE_SIZE)
      for _, p in ipairs { "GET /reps", "GET /calls", "GET /report", "POST", "columnar" } do has(doc, p) end
    end)

    it("limits a POST to 100000 rows, keyed by call_id / rep_id", function()
      assert.are.equal(100000, converz.MAX_ROWS_PER_REQUEST)
      has(doc, "Max rows per request: " .. converz.MAX_ROWS_PER_REQUEST .. ".")
      has(doc, "identified by call_id")
      has(doc, "identified by rep_id")
      has(doc, "will set conversation 1's subcampaign to null")
    end)
  end)

  describe("004/001 AgentX (DeepConverse)", function()
    local doc, old = read("004_6a0f91a9839eaa85.txt"), read("001_8738296198c3e4fb.txt")

    it("has the base URL, rate limit and page size the module uses", function()
      has(doc, agentx.BASE_URL)
      has(old, agentx.BASE_URL .. "/conversations/export/v1/conversations")
      has(doc, agentx.RATE_LIMIT.per_second .. " requests per second per endpoint")
      has(doc, "up to " .. agentx.MAX_PER_PAGE .. " records")
      has(doc, "The maximum is " .. agentx.MAX_PER_PAGE .. ".")
      has(doc, "x-api-key")
      has(old, "'x-api-key'")
    end)

    it("documents both endpoints and every query parameter", function()
      for _, ep in ipairs(endpoints(agentx.class)) do has(doc, ep.method .. " " .. ep.path) end
      for _, p in ipairs { "start_time", "end_time", "bot_name", "per_page", "cursor", "conversation_id" } do
        has(doc, p)
      end
      has(doc, "Unix timestamp, in seconds")
      has(doc, "until it is null")
      has(old, "'bot_name': 'r3-218210'")
      has(doc, "User:\\t")                     -- the transcript format of conversation metadata
    end)
  end)

  describe("002 ConverseIQ", function()
    local doc = read("002_e47512dfc7d344ef.txt")

    it("has the base URL, header and envelope the module uses", function()
      has(doc, converseiq.BASE_URL)
      has(doc, "x-api-key")
      has(doc, "Max: " .. converseiq.MAX_LIMIT)
      has(doc, '{ "data": [ ...array of objects ], "page": 1, "limit": 20, "pages": 10, "total": 299}')
      has(doc, "?page=2&limit=10")
    end)

    it("documents every endpoint of the module", function()
      for _, ep in ipairs(endpoints(converseiq.class)) do
        local pattern = (ep.method .. " " .. converseiq.BASE_URL .. ep.path)
          :gsub("[%.%-%?]", "%%%0"):gsub("{[%w_]+}", "{{%%w+}}")
        assert.is_truthy(doc:find(pattern .. "[%s?]"), ep.name .. ": " .. pattern)
      end
    end)

    it("has the required fields the module checks", function()
      has(doc, "channel | String (GUID) | yes")
      has(doc, "message | String | yes")
      has(doc, "at least one of the following parameters: agent, bot, or contact")
      has(doc, "search?email=")
      has(doc, "pass a null value as the title")
    end)
  end)

  describe("003 Converra", function()
    local doc = read("003_9598b5f1b202f830.txt")

    it("has the base URL, Bearer auth, plans and error shape the module uses", function()
      has(doc, converra.BASE_URL)
      has(doc, "Authorization: Bearer")
      assert.is_truthy(doc:find("Free%s*" .. converra.PLANS.free.per_minute))
      assert.is_truthy(doc:find("Pro%s*" .. converra.PLANS.pro.per_minute))
      assert.is_truthy(doc:find("Enterprise%s*Custom"))
      assert.is_false(converra.PLANS.enterprise)
      has(doc, '"error": {')
      has(doc, '"code": "INVALID_API_KEY"')
      has(doc, '"message":')
    end)

    it("documents every endpoint of the module (METHOD/path rows)", function()
      for _, ep in ipairs(endpoints(converra.class)) do
        local row = ep.method .. ep.path:gsub("{id}", ":id")
        has(doc, row, "seed 003 (" .. ep.name .. ")")
      end
      has(doc, "pass action and jobIds in body")
    end)
  end)
end)
