/*
 * turnpike — Redis storage for rate limits (redis.h): the per-worker connection, its failure
 * handling, and the Lua scripts (a transcription of algo.c; change both together).
 *
 * hiredis 0.14 has no timeouts of its own: every command's send time goes into a FIFO (Redis
 * answers in order), and a timer drops the connection when the oldest one is older than the
 * timeout, or when connecting takes longer. Dropping (redisAsyncFree) runs every pending
 * callback with a NULL reply, which fails its op and wakes its request.
 *
 * Ops are owned by the connection, not by the request: a request may go away while Redis is
 * still answering (its arena is then gone, the op is not). An answered op is freed by its
 * request (tp_rl_op_done) or, if that request went away, by the timer a minute later — far
 * beyond the 30 s a request may stay suspended.
 */
#include "ratelimit/redis.h"
#include "turnpike/log.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_US (1 * TP_RL_US)          /* between connection attempts after a failure */
#define TICK_MS 50                       /* timer period while something is pending */
#define OP_KEEP_US (60 * TP_RL_US)       /* answered ops of vanished requests */
#define MAX_ARGS (3 + TP_RL_MAX_LIMITS * 7)

/* ---- scripts ------------------------------------------------------------------------------ */

/*
 * KEYS[i]: the key of limit i. ARGV[1]: the request's member name; then 6 numbers per limit:
 * algorithm (enum tp_rl_algo), count, period µs, burst, max delay µs (leaky) or lease µs
 * (concurrency), interval µs. Returns {all admitted, then per limit: allowed, limit,
 * remaining, reset µs, retry µs, delay µs}.
 */
static const char take_script[] =
    "pcall(redis.replicate_commands)\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local member = ARGV[1]\n"
    "local fl, mx = math.floor, math.max\n"
    "local function fmt(x) return string.format('%.0f', x) end\n"
    "local function num(v) return tonumber(v or '0') or 0 end\n"
    "local function first(prev, cur, limit, p)\n"
    "  if prev == 0 then return 0 end\n"
    "  local q = fl(((limit - cur) * p - 1) / prev)\n"
    "  if q >= p then return 0 end\n"
    "  return p - q\n"
    "end\n"
    "local function wait(prev, cur, limit, p, e)\n"
    "  if cur < limit then\n"
    "    local f = first(prev, cur, limit, p)\n"
    "    if f > e then return f - e end\n"
    "    return 0\n"
    "  end\n"
    "  return (p - e) + first(cur, 0, limit, p)\n"
    "end\n"
    "local out, plan, all = {0}, {}, true\n"
    "for i = 1, #KEYS do\n"
    "  local o = 2 + (i - 1) * 6\n"
    "  local algo, count, p = tonumber(ARGV[o]), tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])\n"
    "  local burst, dly, iv = tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4]), tonumber(ARGV[o + 5])\n"
    "  local key = KEYS[i]\n"
    "  local ok, limit, rem, reset, retry, delay = false, count, 0, 0, 0, 0\n"
    "  local c\n"
    "  if algo == 0 then\n"
    "    local w = fl(now / p)\n"
    "    local k = key .. ':' .. fmt(w)\n"
    "    local used = num(redis.call('GET', k))\n"
    "    local e = (w + 1) * p - now\n"
    "    ok = used < count\n"
    "    if ok then used = used + 1 end\n"
    "    rem = mx(count - used, 0)\n"
    "    reset = e\n"
    "    if rem == 0 then retry = e end\n"
    "    c = {'incr', k, e}\n"
    "  elseif algo == 1 then\n"
    "    local w = fl(now / p)\n"
    "    local e = now - w * p\n"
    "    local k = key .. ':' .. fmt(w)\n"
    "    local cur = num(redis.call('GET', k))\n"
    "    local prev = num(redis.call('GET', key .. ':' .. fmt(w - 1)))\n"
    "    local used = cur + fl(prev * (p - e) / p)\n"
    "    ok = used < count\n"
    "    if ok then cur = cur + 1; used = used + 1 end\n"
    "    rem = mx(count - used, 0)\n"
    "    if rem == 0 then retry = wait(prev, cur, count, p, e) end\n"
    "    if cur > 0 then reset = 2 * p - e elseif prev > 0 then reset = p - e end\n"
    "    if reset < retry then reset = retry end\n"
    "    c = {'incr', k, 2 * p - e}\n"
    "  elseif algo == 2 then\n"
    "    redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - p))\n"
    "    local live = redis.call('ZCARD', key)\n"
    "    local oldest, newest = 0, 0\n"
    "    if live > 0 then\n"
    "      oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])\n"
    "      newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])\n"
    "    end\n"
    "    local at = mx(now, newest)\n"
    "    ok = live < count\n"
    "    if ok then\n"
    "      if live == 0 then oldest = at end\n"
    "      newest = at\n"
    "      live = live + 1\n"
    "    end\n"
    "    rem = mx(count - live, 0)\n"
    "    if rem == 0 then retry = oldest + p - now end\n"
    "    if live > 0 then reset = newest + p - now end\n"
    "    c = {'zadd', key, at, p}\n"
    "  elseif algo == 3 then\n"
    "    local cap = burst * iv\n"
    "    local tat = mx(num(redis.call('GET', key)), now)\n"
    "    ok = tat - now <= cap - iv\n"
    "    if ok then tat = tat + iv end\n"
    "    local room = cap - (tat - now)\n"
    "    limit = burst\n"
    "    if room > 0 then rem = fl(room / iv) end\n"
    "    reset = tat - now\n"
    "    if rem == 0 then retry = mx(tat - (cap - iv) - now, 0) end\n"
    "    c = {'set', key, tat, tat - now}\n"
    "  elseif algo == 4 then\n"
    "    local tat = mx(num(redis.call('GET', key)), now)\n"
    "    ok = tat - now <= dly\n"
    "    if ok then delay = tat - now; tat = tat + iv end\n"
    "    local room = now + dly - tat\n"
    "    if room >= 0 then rem = fl(room / iv) + 1 end\n"
    "    if tat > now then reset = tat - now end\n"
    "    if rem == 0 then retry = mx(tat - dly - now, 0) end\n"
    "    c = {'set', key, tat, tat - now}\n"
    "  else\n"
    "    redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now))\n"
    "    local cur = redis.call('ZCARD', key)\n"
    "    ok = cur < count\n"
    "    if ok then cur = cur + 1 end\n"
    "    rem = mx(count - cur, 0)\n"
    "    if rem == 0 then retry = 1000000; reset = 1000000 end\n"
    "    c = {'lease', key, now + dly, dly}\n"
    "  end\n"
    "  all = all and ok\n"
    "  plan[i] = c\n"
    "  local b = 2 + (i - 1) * 6\n"
    "  out[b] = ok and 1 or 0\n"
    "  out[b + 1] = limit\n"
    "  out[b + 2] = rem\n"
    "  out[b + 3] = reset\n"
    "  out[b + 4] = retry\n"
    "  out[b + 5] = delay\n"
    "end\n"
    "local function ttl(us) return math.ceil(us / 1000) + 1000 end\n"
    "for i = 1, #KEYS do\n"
    "  local c, b = plan[i], 2 + (i - 1) * 6\n"
    "  if all then\n"
    "    if c[1] == 'incr' then\n"
    "      redis.call('INCR', c[2])\n"
    "      redis.call('PEXPIRE', c[2], ttl(c[3]))\n"
    "    elseif c[1] == 'zadd' then\n"
    "      redis.call('ZADD', c[2], fmt(c[3]), member)\n"
    "      redis.call('PEXPIRE', c[2], ttl(c[4]))\n"
    "    elseif c[1] == 'set' then\n"
    "      redis.call('SET', c[2], fmt(c[3]), 'PX', ttl(c[4]))\n"
    "    else\n"
    "      redis.call('ZADD', c[2], fmt(c[3]), member)\n"
    "      redis.call('PEXPIRE', c[2], ttl(c[4]))\n"
    "    end\n"
    "  elseif out[b] == 1 then\n"
    "    out[b + 2] = out[b + 2] + 1\n"
    "  end\n"
    "end\n"
    "if all then out[1] = 1 end\n"
    "return out\n";

/*
 * redis-batched: KEYS[1] the key; ARGV: period µs, window w, delta for w, delta for w - 1.
 * Adds the deltas (TTL two periods) and returns {w, total of w, total of w - 1}.
 */
static const char sync_script[] =
    "local p, w = tonumber(ARGV[1]), ARGV[2]\n"
    "local dc, dp = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local kc = KEYS[1] .. ':' .. w\n"
    "local kp = KEYS[1] .. ':' .. string.format('%.0f', tonumber(w) - 1)\n"
    "local ttl = math.ceil(2 * p / 1000) + 1000\n"
    "if dc > 0 then redis.call('INCRBY', kc, dc); redis.call('PEXPIRE', kc, ttl) end\n"
    "if dp > 0 then redis.call('INCRBY', kp, dp); redis.call('PEXPIRE', kp, ttl) end\n"
    "return {tonumber(w), tonumber(redis.call('GET', kc) or '0'),\n"
    "        tonumber(redis.call('GET', kp) or '0')}\n";

/* ---- connection ----------------------------------------------------------------------------- */

enum cmd_kind { CMD_TAKE, CMD_SYNC, CMD_NOTE };

struct sync_req {
    tp_rl_sync_cb cb;
    void *arg;
};

struct tp_rl_redis {
    const struct tp_rl_redis_conf *conf_ref; /* only for the first connect; copied below */
    char *host, *username, *password;
    uint16_t port;
    int database;
    int64_t timeout_us;
    char *name;                         /* host:port for messages */
    struct event_base *base;
    redisAsyncContext *ac;
    bool connected;                     /* ac finished connecting */
    bool ever_tried;
    bool down_logged;                   /* a drop was logged and recovery not yet */
    int64_t connect_started;
    int64_t retry_at;
    struct tp_plugin_wait_list connect_waiters;
    int64_t *sent;                      /* FIFO of send times of unanswered commands */
    size_t sent_head, sent_len, sent_cap;
    struct event *timer;
    bool timer_armed;
    struct tp_rl_op *ops;               /* every op not yet freed */
    char sha_take[41], sha_sync[41];
    uint64_t member_seed, member_seq;
    void *companion;
    void (*companion_destroy)(void *);
    bool destroying;
};

static char note_tag;                   /* privdata of fire-and-forget commands */

static void sha1_hex(const char *s, char *out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[20];
    unsigned int len = 0;
    if (EVP_Digest(s, strlen(s), md, &len, EVP_sha1(), NULL) != 1)
        memset(md, 0, sizeof(md));
    for (size_t i = 0; i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
}

int tp_rl_redis_conf_init(struct tp_rl_redis_conf *c)
{
    char pw[41] = "-";
    if (c->password)
        sha1_hex(c->password, pw);
    size_t n = strlen(c->host) + (c->username ? strlen(c->username) : 0) + 128;
    c->worker_key = malloc(n);
    if (!c->worker_key)
        return TP_ENOMEM;
    snprintf(c->worker_key, n, "ratelimit:redis:%s:%u:%d:%s:%.16s:%u", c->host, c->port,
             c->database, c->username ? c->username : "-", pw, c->timeout_ms);
    return 0;
}

void tp_rl_redis_conf_free(struct tp_rl_redis_conf *c)
{
    free(c->host);
    free(c->username);
    free(c->password);
    free(c->worker_key);
    memset(c, 0, sizeof(*c));
}

static void arm(struct tp_rl_redis *r)
{
    if (r->timer_armed || r->destroying)
        return;
    struct timeval tv = {0, TICK_MS * 1000};
    if (event_add(r->timer, &tv) == 0)
        r->timer_armed = true;
}

static void sent_push(struct tp_rl_redis *r, int64_t now)
{
    if (r->sent_len == r->sent_cap) {
        size_t cap = r->sent_cap ? r->sent_cap * 2 : 64;
        int64_t *n = malloc(cap * sizeof(*n));
        if (!n)
            return; /* the command then has no deadline of its own; the next one covers it */
        for (size_t i = 0; i < r->sent_len; i++)
            n[i] = r->sent[(r->sent_head + i) % r->sent_cap];
        free(r->sent);
        r->sent = n;
        r->sent_head = 0;
        r->sent_cap = cap;
    }
    r->sent[(r->sent_head + r->sent_len) % r->sent_cap] = now;
    r->sent_len++;
    arm(r);
}

static void sent_pop(struct tp_rl_redis *r)
{
    if (!r->sent_len)
        return;
    r->sent_head = (r->sent_head + 1) % r->sent_cap;
    r->sent_len--;
}

/* The connection is gone (failed, refused, closed, timed out): fail what waits on it. */
static void went_down(struct tp_rl_redis *r, const char *why)
{
    r->ac = NULL;
    r->connected = false;
    r->sent_len = 0;
    r->retry_at = tp_rl_now_us() + RETRY_US;
    if (!r->down_logged && !r->destroying) {
        tp_log(TP_LOG_ERROR,
               "rate-limiting: redis %s unreachable (%s); requests follow their plugin's "
               "redis_failure policy (fail-open: local counters, fail-closed: 503) until it "
               "is back",
               r->name, why);
        r->down_logged = true;
    }
    tp_plugin_wake_all(&r->connect_waiters);
}

/* Drop the connection from outside hiredis's callbacks (timer, destroy). */
static void drop(struct tp_rl_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    if (!ac)
        return;
    went_down(r, why);
    /* runs every pending callback with a NULL reply; our callbacks see r->ac == NULL */
    redisAsyncFree(ac);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct tp_rl_redis *r = ac->data;
    if (!r || r->ac != ac)
        return;
    if (status != REDIS_OK) {
        went_down(r, ac->errstr[0] ? ac->errstr : "connection failed"); /* hiredis frees ac */
        return;
    }
    r->connected = true;
    if (r->down_logged) {
        tp_log(TP_LOG_WARN, "rate-limiting: redis %s reachable again", r->name);
        r->down_logged = false;
    }
    tp_plugin_wake_all(&r->connect_waiters);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct tp_rl_redis *r = ac->data;
    (void)status;
    if (r && r->ac == ac)
        went_down(r, ac->errstr[0] ? ac->errstr : "connection closed"); /* hiredis frees ac */
}

static void op_unlink(struct tp_rl_op *op)
{
    struct tp_rl_redis *r = op->r;
    if (op->prev)
        op->prev->next = op->next;
    else if (r->ops == op)
        r->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

static void op_free(struct tp_rl_op *op)
{
    op_unlink(op);
    free(op->args);
    free(op->arg_len);
    free(op);
}

/* An op got its answer (or failed): wake its request, or free it if the request left. */
static void op_finish(struct tp_rl_op *op, bool failed)
{
    op->done = true;
    op->failed = failed;
    op->done_at = tp_rl_now_us();
    if (!op->waiters.head) {
        op_free(op);
        return;
    }
    tp_plugin_wake_all(&op->waiters);
    arm(op->r);
}

static bool parse_take(struct tp_rl_op *op, const redisReply *rep)
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 1 + 6 * op->n)
        return false;
    for (size_t i = 0; i < rep->elements; i++)
        if (rep->element[i]->type != REDIS_REPLY_INTEGER)
            return false;
    op->allowed = rep->element[0]->integer == 1;
    for (size_t i = 0; i < op->n; i++) {
        redisReply **e = rep->element + 1 + 6 * i;
        struct tp_rl_decision *d = &op->d[i];
        d->allowed = e[0]->integer == 1;
        d->limit = e[1]->integer > 0 ? (uint64_t)e[1]->integer : 0;
        d->remaining = e[2]->integer > 0 ? (uint64_t)e[2]->integer : 0;
        d->reset_us = e[3]->integer;
        d->retry_us = e[4]->integer;
        d->delay_us = e[5]->integer;
    }
    return true;
}

static int send_argv(struct tp_rl_redis *r, enum cmd_kind kind, void *priv, int argc,
                     const char **argv, const size_t *len);

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* NOSCRIPT: the server lost the scripts (SCRIPT FLUSH, failover): send the script itself. */
static bool resend_eval(struct tp_rl_redis *r, struct tp_rl_op *op)
{
    const char *argv[MAX_ARGS];
    size_t len[MAX_ARGS];
    const char *p = op->args;
    if (op->retried || op->num_args > MAX_ARGS)
        return false;
    for (size_t i = 0; i < op->num_args; i++) {
        argv[i] = p;
        len[i] = op->arg_len[i];
        p += op->arg_len[i];
    }
    argv[0] = "EVAL";
    len[0] = 4;
    argv[1] = take_script;
    len[1] = sizeof(take_script) - 1;
    op->retried = true;
    return send_argv(r, CMD_TAKE, op, (int)op->num_args, argv, len) == 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct tp_rl_redis *r = ac->data;
    redisReply *rep = reply;
    bool gone = !r || r->ac != ac;
    if (r && !gone)
        sent_pop(r);
    if (priv == &note_tag) {
        /* AUTH, SELECT or SCRIPT LOAD refused: nothing after it can work */
        if (!gone && rep && rep->type == REDIS_REPLY_ERROR)
            drop(r, rep->str);
        return;
    }
    struct tp_rl_op *op = priv;
    if (!gone && rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0 &&
        resend_eval(r, op))
        return;
    bool ok = parse_take(op, rep);
    op_finish(op, !ok);
    if (!gone && !ok)
        drop(r, rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected answer");
}

static int note(struct tp_rl_redis *r, int argc, const char **argv);

static void on_sync_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct tp_rl_redis *r = ac->data;
    struct sync_req *s = priv;
    redisReply *rep = reply;
    if (r && r->ac == ac)
        sent_pop(r);
    bool ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
              rep->element[0]->type == REDIS_REPLY_INTEGER &&
              rep->element[1]->type == REDIS_REPLY_INTEGER &&
              rep->element[2]->type == REDIS_REPLY_INTEGER;
    if (r && r->ac == ac && rep && rep->type == REDIS_REPLY_ERROR) {
        if (strncmp(rep->str, "NOSCRIPT", 8) == 0)
            note(r, 3, (const char *[]){"SCRIPT", "LOAD", sync_script}); /* for the next one */
        else
            drop(r, rep->str);
    }
    if (s->cb)
        s->cb(s->arg, ok, ok ? rep->element[0]->integer : 0,
              ok ? (uint64_t)TP_MAX(rep->element[1]->integer, 0) : 0,
              ok ? (uint64_t)TP_MAX(rep->element[2]->integer, 0) : 0);
    free(s);
}

static int send_argv(struct tp_rl_redis *r, enum cmd_kind kind, void *priv, int argc,
                     const char **argv, const size_t *len)
{
    redisCallbackFn *fn = kind == CMD_SYNC ? on_sync_reply : on_reply;
    if (!r->ac || redisAsyncCommandArgv(r->ac, fn, priv, argc, argv, len) != REDIS_OK)
        return TP_EIO;
    sent_push(r, tp_rl_now_us());
    return 0;
}

static int note(struct tp_rl_redis *r, int argc, const char **argv)
{
    size_t len[8];
    for (int i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    return send_argv(r, CMD_NOTE, &note_tag, argc, argv, len);
}

static void start_connect(struct tp_rl_redis *r)
{
    r->ever_tried = true;
    r->connect_started = tp_rl_now_us();
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (!ac) {
        went_down(r, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        went_down(r, why);
        return;
    }
    ac->data = r;
    if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
        redisAsyncFree(ac);
        went_down(r, "event loop");
        return;
    }
    r->ac = ac;
    r->connected = false;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* queued now, written once connected, answered in this order before any script call */
    char db[16];
    snprintf(db, sizeof(db), "%d", r->database);
    if (r->password && r->username)
        note(r, 3, (const char *[]){"AUTH", r->username, r->password});
    else if (r->password)
        note(r, 2, (const char *[]){"AUTH", r->password});
    if (r->database)
        note(r, 2, (const char *[]){"SELECT", db});
    note(r, 3, (const char *[]){"SCRIPT", "LOAD", take_script});
    note(r, 3, (const char *[]){"SCRIPT", "LOAD", sync_script});
    arm(r);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    struct tp_rl_redis *r = arg;
    int64_t now = tp_rl_now_us();
    (void)fd;
    (void)what;
    r->timer_armed = false;
    if (r->ac && !r->connected && now - r->connect_started > r->timeout_us)
        drop(r, "connect timed out");
    else if (r->ac && r->sent_len && now - r->sent[r->sent_head] > r->timeout_us)
        drop(r, "no answer within the timeout");
    bool pending = false;
    for (struct tp_rl_op *op = r->ops, *next; op; op = next) {
        next = op->next;
        if (op->done && now - op->done_at > OP_KEEP_US)
            op_free(op);
        else if (op->done)
            pending = true;
    }
    if (pending || (r->ac && (!r->connected || r->sent_len)))
        arm(r);
}

static void redis_destroy(void *arg)
{
    struct tp_rl_redis *r = arg;
    r->destroying = true;
    drop(r, "worker exit");
    if (r->companion_destroy)
        r->companion_destroy(r->companion);
    tp_plugin_wake_all(&r->connect_waiters);
    while (r->ops)
        op_free(r->ops);
    if (r->timer)
        event_free(r->timer);
    free(r->sent);
    free(r->host);
    free(r->username);
    free(r->password);
    free(r->name);
    free(r);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

struct tp_rl_redis *tp_rl_redis_get(struct tp_plugin_ctx *ctx, const struct tp_rl_redis_conf *c)
{
    struct tp_rl_redis *r = tp_plugin_worker_get(ctx, c->worker_key);
    if (r)
        return r;
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->base = tp_plugin_event_base(ctx);
    r->host = strdup(c->host);
    r->username = dup_or_null(c->username);
    r->password = dup_or_null(c->password);
    r->port = c->port;
    r->database = c->database;
    r->timeout_us = (int64_t)c->timeout_ms * 1000;
    size_t n = strlen(c->host) + 16;
    r->name = malloc(n);
    r->timer = event_new(r->base, -1, 0, tick, r);
    if (!r->host || !r->name || !r->timer || (c->username && !r->username) ||
        (c->password && !r->password)) {
        redis_destroy(r);
        return NULL;
    }
    snprintf(r->name, n, "%s:%u", c->host, c->port);
    sha1_hex(take_script, r->sha_take);
    sha1_hex(sync_script, r->sha_sync);
    if (RAND_bytes((unsigned char *)&r->member_seed, sizeof(r->member_seed)) != 1)
        r->member_seed = (uint64_t)(uintptr_t)r ^ (uint64_t)tp_rl_now_us();
    if (tp_plugin_worker_put(ctx, c->worker_key, r, redis_destroy) != 0) {
        redis_destroy(r);
        return NULL;
    }
    return r;
}

enum tp_rl_redis_state tp_rl_redis_state(struct tp_rl_redis *r)
{
    if (r->ac)
        return r->connected ? TP_RL_REDIS_UP
                            : (r->down_logged ? TP_RL_REDIS_DOWN : TP_RL_REDIS_CONNECTING);
    if (!r->ever_tried || tp_rl_now_us() >= r->retry_at) {
        bool first = !r->ever_tried;
        start_connect(r);
        if (r->ac)
            return first ? TP_RL_REDIS_CONNECTING : TP_RL_REDIS_DOWN;
    }
    return TP_RL_REDIS_DOWN;
}

struct tp_plugin_wait_list *tp_rl_redis_connect_waiters(struct tp_rl_redis *r)
{
    return &r->connect_waiters;
}

struct event_base *tp_rl_redis_base(struct tp_rl_redis *r)
{
    return r->base;
}

void **tp_rl_redis_companion(struct tp_rl_redis *r, void (*destroy)(void *))
{
    r->companion_destroy = destroy;
    return &r->companion;
}

size_t tp_rl_redis_member(struct tp_rl_redis *r, char *buf)
{
    size_t n = tp_fmt_hex(buf, r->member_seed, 16);
    buf[n++] = '-';
    return n + tp_fmt_hex(buf + n, ++r->member_seq, 0);
}

/* Keep a copy of the command (for an EVAL after NOSCRIPT). */
static int keep_args(struct tp_rl_op *op, int argc, const char **argv, const size_t *len)
{
    size_t total = 0;
    for (int i = 0; i < argc; i++)
        total += len[i];
    op->args = malloc(total ? total : 1);
    op->arg_len = malloc((size_t)argc * sizeof(size_t));
    if (!op->args || !op->arg_len)
        return TP_ENOMEM;
    char *p = op->args;
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i], len[i]);
        p += len[i];
        op->arg_len[i] = len[i];
    }
    op->num_args = (size_t)argc;
    return 0;
}

struct tp_rl_op *tp_rl_redis_take(struct tp_rl_redis *r, const struct tp_rl_limit *const *limits,
                                  const struct tp_slice *keys, size_t n, struct tp_slice member,
                                  int64_t lease_us)
{
    const char *argv[MAX_ARGS];
    size_t len[MAX_ARGS];
    char nums[TP_RL_MAX_LIMITS][6][24];
    char nkeys[8];
    int argc = 0;

    if (!r->ac || !r->connected || n == 0 || n > TP_RL_MAX_LIMITS)
        return NULL;
    snprintf(nkeys, sizeof(nkeys), "%zu", n);
    argv[argc] = "EVALSHA", len[argc++] = 7;
    argv[argc] = r->sha_take, len[argc++] = 40;
    argv[argc] = nkeys, len[argc++] = strlen(nkeys);
    for (size_t i = 0; i < n; i++)
        argv[argc] = keys[i].ptr, len[argc++] = keys[i].len;
    argv[argc] = member.ptr, len[argc++] = member.len;
    for (size_t i = 0; i < n; i++) {
        const struct tp_rl_limit *l = limits[i];
        long long v[6] = {l->algo, (long long)l->count, l->period_us, (long long)l->burst,
                          l->algo == TP_RL_CONCURRENCY ? lease_us : l->max_delay_us,
                          l->interval_us};
        for (size_t k = 0; k < 6; k++) {
            snprintf(nums[i][k], sizeof(nums[i][k]), "%lld", v[k]);
            argv[argc] = nums[i][k], len[argc++] = strlen(nums[i][k]);
        }
    }
    struct tp_rl_op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->r = r;
    op->n = n;
    if (keep_args(op, argc, argv, len) != 0) {
        free(op->args);
        free(op->arg_len);
        free(op);
        return NULL;
    }
    op->next = r->ops;
    if (r->ops)
        r->ops->prev = op;
    r->ops = op;
    if (send_argv(r, CMD_TAKE, op, argc, argv, len) != 0) {
        op_free(op);
        return NULL;
    }
    return op;
}

void tp_rl_op_done(struct tp_rl_op *op)
{
    if (!op)
        return;
    if (!op->done) {
        /* still unanswered (cannot happen from a resumed request): let the answer free it */
        op->waiters.head = NULL;
        return;
    }
    op_free(op);
}

void tp_rl_redis_release(struct tp_rl_redis *r, struct tp_slice key, struct tp_slice member)
{
    const char *argv[3] = {"ZREM", key.ptr, member.ptr};
    size_t len[3] = {4, key.len, member.len};
    if (r->ac && r->connected)
        send_argv(r, CMD_NOTE, &note_tag, 3, argv, len);
}

int tp_rl_redis_sync(struct tp_rl_redis *r, struct tp_slice key, int64_t period_us, int64_t w,
                     uint64_t delta_cur, uint64_t delta_prev, tp_rl_sync_cb cb, void *arg)
{
    char p[24], ws[24], dc[24], dp[24];
    if (!r->ac || !r->connected)
        return TP_EIO;
    snprintf(p, sizeof(p), "%lld", (long long)period_us);
    snprintf(ws, sizeof(ws), "%lld", (long long)w);
    snprintf(dc, sizeof(dc), "%llu", (unsigned long long)delta_cur);
    snprintf(dp, sizeof(dp), "%llu", (unsigned long long)delta_prev);
    const char *argv[8] = {"EVALSHA", r->sha_sync, "1", key.ptr, p, ws, dc, dp};
    size_t len[8] = {7, 40, 1, key.len, strlen(p), strlen(ws), strlen(dc), strlen(dp)};
    struct sync_req *s = malloc(sizeof(*s));
    if (!s)
        return TP_ENOMEM;
    s->cb = cb;
    s->arg = arg;
    if (send_argv(r, CMD_SYNC, s, 8, argv, len) != 0) {
        free(s);
        return TP_EIO;
    }
    return 0;
}
