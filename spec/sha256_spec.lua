-- core.sha256 against FIPS 180-4 examples and NIST byte-oriented vectors.
local core = require "converse.core"

describe("converse.core.sha256", function()
  local cases = {
    { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    { ("a"):rep(1000000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
    { "\189", "68325720aabd7c82f30f554b313d0570c95accbb7dc4b5aae11204c08ffe732b" },
    { "\201\140\142\85", "7abc22c0ae5af26ce93dbb94433a0e0b2e119d014f8e7f65bd56c61ccccd9504" },
    { ("\0"):rep(55), "02779466cdec163811d078815c633f21901413081449002f24aa3e80f0b88ef7" },
    { ("\0"):rep(56), "d4817aa5497628e7c77e6b606107042bbba3130888c5f47a375e6179be789fbb" },
    { ("\0"):rep(64), "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b" },
  }
  for _, c in ipairs(cases) do
    it(("hashes %d bytes"):format(#c[1]), function()
      assert.are.equal(c[2], core.sha256(c[1]))
    end)
  end

  it("wants a string", function()
    assert.has_error(function() core.sha256({}) end)
  end)
end)
