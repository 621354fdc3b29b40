// wideattn: attention for LLM inference with wide heads (head_dim up to 512).
#pragma once

#include "wideattn/attention.h"
#include "wideattn/components.h"
#include "wideattn/context.h"
#include "wideattn/context_parallel.h"
#include "wideattn/convert.h"
#include "wideattn/problem.h"
#include "wideattn/status.h"
#include "wideattn/types.h"
#include "wideattn/write_kv.h"
