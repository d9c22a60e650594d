/*
** sha256.c -- core.sha256(s) -> 64 hex digits (FIPS 180-4).
**
** Used where an identity must be shared without the secret it stands for:
** a shared rate limit in Redis is keyed by the hash of the API key, never
** the key. Linking libcrypto for one hash would add a dependency; the
** algorithm is short, and spec/sha256_spec.lua checks it against the FIPS
** 180-4 examples and the NIST byte-oriented vectors.
*/
#include <string.h>

#include "cv.h"

typedef struct cv_sha256_ctx {
  uint32_t h[8];
  uint64_t len;                   /* bytes hashed */
  unsigned char block[64];
  size_t   fill;
} cv_sha256_ctx;

static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

#define ROR(x, n)  (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(cv_sha256_ctx *s, const unsigned char *p) {
  uint32_t w[64], a, b, c, d, e, f, g, h;
  size_t i;
  for (i = 0; i < 16; i++, p += 4)
    w[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
  for (i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3];
  e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
  for (i = 0; i < 64; i++) {
    uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g; g = f; f = e; e = d + t1;
    d = c; c = b; b = a; a = t1 + t2;
  }
  s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d;
  s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

static void update(cv_sha256_ctx *s, const unsigned char *p, size_t n) {
  s->len += n;
  while (n > 0) {
    size_t take = 64 - s->fill < n ? 64 - s->fill : n;
    memcpy(s->block + s->fill, p, take);
    s->fill += take;
    p += take;
    n -= take;
    if (s->fill == 64) { sha_block(s, s->block); s->fill = 0; }
  }
}

/* core.sha256(s) -> lower-case hex digest */
int cv_sha256(lua_State *L) {
  static const uint32_t init[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
  size_t n, i;
  const char *p = luaL_checklstring(L, 1, &n);
  unsigned char pad[72] = { 0x80 }, lenbytes[8];
  char hex[64];
  uint64_t bits;
  cv_sha256_ctx s;
  memcpy(s.h, init, sizeof init);
  s.len = 0;
  s.fill = 0;
  update(&s, (const unsigned char *)p, n);
  bits = s.len * 8;
  update(&s, pad, s.fill < 56 ? 56 - s.fill : 120 - s.fill);
  for (i = 0; i < 8; i++) lenbytes[i] = (unsigned char)(bits >> (56 - 8 * i));
  update(&s, lenbytes, 8);
  for (i = 0; i < 32; i++) {
    unsigned byte = (s.h[i / 4] >> (24 - 8 * (i % 4))) & 0xff;
    hex[2 * i] = "0123456789abcdef"[byte >> 4];
    hex[2 * i + 1] = "0123456789abcdef"[byte & 15];
  }
  lua_pushlstring(L, hex, 64);
  return 1;
}
