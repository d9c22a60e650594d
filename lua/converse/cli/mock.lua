--- `converse mock`: the local vendor-API mock server (docs/mock.md).
-- The mock parses its own options (`converse mock --help`).
-- @module converse.cli.mock
local M = {}

function M.main(args) return require("converse.mock").main(args) end

return M
