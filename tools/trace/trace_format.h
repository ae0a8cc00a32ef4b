/* The recording format lives in src/common/trace_format.h: libbrisk's
 * sampled profiler (src/malloc/profile.c) writes it too. */
#include "../../src/common/trace_format.h"
