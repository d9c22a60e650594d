/*
** json_fuzz_raw.c -- libFuzzer harness: raw mode agrees with table mode
** (property in json_fuzz_raw.lua).
*/
#define HARNESS "json_fuzz_raw"
#include "fuzz_driver.h"
