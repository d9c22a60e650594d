/*
** json_fuzz_roundtrip.c -- libFuzzer harness: decode, encode, decode gives
** the same values (property in json_fuzz_roundtrip.lua).
*/
#define HARNESS "json_fuzz_roundtrip"
#include "fuzz_driver.h"
