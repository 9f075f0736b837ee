/*
 * turnpike — the leaky bucket's release queue: requests held until their departure time,
 * per worker, on the worker's event loop (never blocking it).
 *
 * Each held request waits on its own wait list in a min-heap ordered by departure time; one
 * timer fires at the earliest departure and wakes every request that is due. A request whose
 * client goes away leaves its list by itself; its heap node is freed when it falls due.
 */
#ifndef TURNPIKE_RATELIMIT_SHAPER_H
#define TURNPIKE_RATELIMIT_SHAPER_H

#include "turnpike/plugin.h"

#include <stdint.h>

/**
 * Hold the request until `due` (µs, tp_rl_now_us's clock): it is put on a wait list and the
 * hook returns TP_PLUGIN_SUSPEND; it is resumed at (or just after) due.
 * @return 0, TP_ENOMEM, or TP_EINVAL (the request already waits elsewhere); on error the
 *         request was not put on hold.
 */
int tp_rl_shaper_hold(struct tp_plugin_ctx *ctx, int64_t due);

#endif
