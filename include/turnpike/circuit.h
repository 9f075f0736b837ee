/*
 * turnpike — circuit breakers (issue 3, item 4), one per upstream target and one per service.
 *
 *   closed ──(failure ratio or count over the window)──▶ open
 *   open ──(open_time elapsed, next request)──▶ half-open
 *   half-open ──(half_open_requests trials all succeed)──▶ closed
 *   half-open ──(any trial fails)──▶ open (for a full open_time again)
 *
 * Beside the state machine a breaker bounds the requests in flight (max_requests) and, for
 * upstream targets, the connects in progress (max_pending), as Envoy's circuit breakers do.
 *
 * A breaker is shared by every worker and uses atomics only: no locks, no allocation after
 * tp_circuit_new(). Time is passed in by the caller (monotonic milliseconds), so tests drive a
 * clock of their own.
 */
#ifndef TURNPIKE_CIRCUIT_H
#define TURNPIKE_CIRCUIT_H

#include <stdbool.h>
#include <stdint.h>

struct tp_conf_circuit;

/** One breaker; thread-safe with atomics only (workers share it). */
struct tp_circuit;

/** Results of tp_circuit_acquire(). */
enum tp_circuit_verdict {
    TP_CIRCUIT_ALLOW = 0, /* send the request; call tp_circuit_done() exactly once later */
    TP_CIRCUIT_OPEN,      /* open, or half-open with every trial taken: 503 + Retry-After */
    TP_CIRCUIT_BUSY,      /* max_requests requests already in flight: 503 */
};

/**
 * Create a breaker, closed, with an empty window and nothing in flight.
 *
 * @param conf  settings; copied, so it may be freed afterwards. NULL gives a breaker that never
 *              opens and has no limits (it still counts requests and connects in flight).
 * @return a new breaker (free with tp_circuit_free), or NULL when out of memory.
 */
struct tp_circuit *tp_circuit_new(const struct tp_conf_circuit *conf);

/** Free a breaker. No thread may still use it. NULL is ignored. */
void tp_circuit_free(struct tp_circuit *c);

/**
 * Ask to send one request through the breaker (any thread, lock-free).
 *
 * Closed: allowed unless max_requests are in flight. Open: refused until open_time has passed
 * since it opened; the first request after that turns the circuit half-open and is its first
 * trial. Half-open: at most half_open_requests trials are admitted in all; later requests are
 * refused until the trials have decided.
 *
 * @param c              the breaker
 * @param now_ms         monotonic clock, milliseconds (below 2^41)
 * @param retry_after_s  set on TP_CIRCUIT_OPEN only: seconds for Retry-After (RFC 9110 §10.2.3),
 *                       the rest of the open time rounded up to whole seconds, at least 1 (1 when
 *                       half-open with every trial taken). May be NULL.
 * @return TP_CIRCUIT_ALLOW (then call tp_circuit_done() exactly once), TP_CIRCUIT_OPEN (answer
 *         503 with Retry-After) or TP_CIRCUIT_BUSY (max_requests reached: answer 503).
 */
int tp_circuit_acquire(struct tp_circuit *c, uint64_t now_ms, uint32_t *retry_after_s);

/**
 * Report the outcome of a request admitted by tp_circuit_acquire() (any thread, lock-free).
 *
 * Closed: the outcome is counted in the sliding window, and a failure that brings the window
 * over failure_ratio (with at least min_requests) or failure_count opens the circuit. Half-open:
 * the outcome is a trial result; any failure opens the circuit again, half_open_requests
 * successes close it (and empty the window). Open: ignored.
 *
 * The call carries no token, so a request admitted before the circuit opened that ends while it
 * is half-open counts as a trial result (at most as many results as trials admitted count).
 *
 * @param c        the breaker
 * @param failure  what the caller counts as failed (5xx from the target, a connect failure, a
 *                 reset, a timeout)
 * @param now_ms   monotonic clock, milliseconds (the same clock as for acquire)
 */
void tp_circuit_done(struct tp_circuit *c, bool failure, uint64_t now_ms);

/**
 * Start one connect to the target (upstream breakers; lock-free).
 * @return true, then call tp_circuit_connect_end() exactly once when the connect completes or
 *         fails; false when max_pending connects are already in progress (answer 503).
 */
bool tp_circuit_connect_begin(struct tp_circuit *c);

/** End a connect started by a successful tp_circuit_connect_begin(). */
void tp_circuit_connect_end(struct tp_circuit *c);

/**
 * The state for display (status endpoint, logs): "closed", "open" or "half-open". An open
 * circuit whose open_time has passed at now_ms shows as "half-open" (the next request is a
 * trial). Returns a static string.
 */
const char *tp_circuit_state_name(const struct tp_circuit *c, uint64_t now_ms);

/** Requests admitted and not yet done (for the status endpoint; relaxed snapshot). */
uint32_t tp_circuit_in_flight(const struct tp_circuit *c);

/** Connects begun and not yet ended (for the status endpoint; relaxed snapshot). */
uint32_t tp_circuit_pending(const struct tp_circuit *c);

#endif
