/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one entry point every fuzz target defines. libFuzzer calls it with each
 * generated input; without libFuzzer, fuzz-main.c calls it once per corpus
 * file. It must not keep state between calls, leak, or crash on any input.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
