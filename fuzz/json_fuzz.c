/*
** json_fuzz.c -- libFuzzer harness: whole and streaming decodes agree
** (property in json_fuzz.lua, driver in fuzz_driver.h).
*/
#define HARNESS "json_fuzz"
#include "fuzz_driver.h"
