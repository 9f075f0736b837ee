/*
 * Compile a validated tp_config into an immutable runtime snapshot: upstreams with resolved
 * targets, services bound to upstreams, and the route matcher.
 */
#include "turnpike/snapshot.h"
#include "config/plugins_internal.h"
#include "turnpike/log.h"
#include "upstream/hash_key.h"

#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

static char *dup_printf_hostport(const char *host, uint16_t port, int omit_80)
{
    char buf[300];
    int v6 = strchr(host, ':') != NULL;
    if (omit_80 && port == 80)
        snprintf(buf, sizeof(buf), v6 ? "[%s]" : "%s", host);
    else
        snprintf(buf, sizeof(buf), v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
    return strdup(buf);
}

/* Resolve host:port once; the first address wins (re-resolved on every reload). */
static int resolve_target(struct tp_target *t, const char *host, uint16_t port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    if (getaddrinfo(host, portstr, &hints, &res) != 0 || !res)
        return TP_ENOTFOUND;
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    t->addrlen = res->ai_addrlen;
    char ip[INET6_ADDRSTRLEN] = "?";
    if (res->ai_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof(ip));
    else if (res->ai_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, ip, sizeof(ip));
    snprintf(t->addr_text, sizeof(t->addr_text), res->ai_family == AF_INET6 ? "[%s]:%u" : "%s:%u",
             ip, (unsigned)port);
    freeaddrinfo(res);
    return 0;
}

static int init_target(struct tp_target *t, const char *host, uint16_t port, uint32_t weight,
                       int nworkers)
{
    t->host = strdup(host);
    t->port = port;
    t->name = dup_printf_hostport(host, port, 0);
    t->host_header = dup_printf_hostport(host, port, 1);
    t->weight = weight;
    atomic_init(&t->active, 0);
    t->pools = calloc((size_t)nworkers, sizeof(*t->pools));
    if (!t->host || !t->name || !t->host_header || !t->pools)
        return TP_ENOMEM;
    return resolve_target(t, host, port);
}

static int init_upstream(struct tp_upstream *u, const char *name,
                         enum tp_balancer_algorithm alg, size_t ntargets, int nworkers)
{
    u->name = strdup(name);
    u->algorithm = alg;
    u->num_targets = ntargets;
    atomic_init(&u->rr_next, 0);
    u->targets = calloc(ntargets ? ntargets : 1, sizeof(*u->targets));
    u->swrr_current = calloc((ntargets ? ntargets : 1) * (size_t)nworkers, sizeof(int64_t));
    u->keepalive_pool = TP_DEFAULT_KEEPALIVE_POOL;
    u->keepalive_idle_ms = TP_DEFAULT_KEEPALIVE_IDLE_MS;
    u->p2c_rng = calloc((size_t)nworkers * TP_P2C_RNG_STRIDE, sizeof(uint64_t));
    if (!u->name || !u->targets || !u->swrr_current || !u->p2c_rng)
        return TP_ENOMEM;
    /* random-two-choices: a distinct, non-zero xorshift state per worker */
    for (int w = 0; w < nworkers; w++)
        u->p2c_rng[(size_t)w * TP_P2C_RNG_STRIDE] =
            tp_hash64(name, strlen(name), (uint64_t)w + 1) | 1;
    return 0;
}

/* Hash settings and, for consistent-hashing, the ring (once the targets have their names). */
static int init_hashing(struct tp_upstream *u, const struct tp_conf_upstream *cu)
{
    u->hash_on = cu->hash_on;
    u->hash_fallback = cu->hash_fallback;
    u->hash_on_name = tp_slice_cstr(cu->hash_on == TP_HASH_HEADER      ? cu->hash_on_header
                                    : cu->hash_on == TP_HASH_COOKIE    ? cu->hash_on_cookie
                                    : cu->hash_on == TP_HASH_QUERY_ARG ? cu->hash_on_query_arg
                                                                       : "");
    u->hash_fallback_name =
        tp_slice_cstr(cu->hash_fallback == TP_HASH_HEADER      ? cu->hash_fallback_header
                      : cu->hash_fallback == TP_HASH_COOKIE    ? cu->hash_on_cookie
                      : cu->hash_fallback == TP_HASH_QUERY_ARG ? cu->hash_fallback_query_arg
                                                               : "");
    return u->algorithm == TP_LB_CONSISTENT_HASHING ? tp_upstream_ring_build(u) : 0;
}

static void report(FILE *errors, const struct tp_config *cfg, struct tp_conf_mark m,
                   const char *msg, const char *detail)
{
    if (errors)
        fprintf(errors, "%s:%d:%d: %s%s\n", cfg->path ? cfg->path : "config", m.line, m.column,
                msg, detail ? detail : "");
}

static int build_upstreams(struct tp_snapshot *s, FILE *errors)
{
    struct tp_config *cfg = s->config;
    int nerr = 0;
    /* implicit upstreams for services whose url names a host directly */
    size_t implicit = 0;
    for (size_t i = 0; i < cfg->num_services; i++)
        if (!tp_config_find_upstream(cfg, cfg->services[i].host))
            implicit++;
    s->upstreams = calloc(cfg->num_upstreams + implicit + 1, sizeof(*s->upstreams));
    if (!s->upstreams)
        return TP_ENOMEM;
    for (size_t i = 0; i < cfg->num_upstreams; i++) {
        const struct tp_conf_upstream *cu = &cfg->upstreams[i];
        struct tp_upstream *u = &s->upstreams[s->num_upstreams++];
        if (init_upstream(u, cu->name, cu->algorithm, cu->num_targets, s->nworkers))
            return TP_ENOMEM;
        u->keepalive_pool = cu->keepalive_pool;
        u->keepalive_idle_ms = cu->keepalive_idle_ms;
        u->healthchecks = cu->healthchecks;
        u->failover_threshold = cu->failover_threshold;
        for (size_t j = 0; j < cu->num_targets; j++) {
            const struct tp_conf_target *ct = &cu->targets[j];
            int rc = init_target(&u->targets[j], ct->host, ct->port, ct->weight, s->nworkers);
            u->targets[j].priority = ct->priority;
            u->tiered |= ct->priority != 0;
            if (rc == TP_ENOMEM)
                return rc;
            if (rc) {
                report(errors, cfg, ct->mark, "cannot resolve target host ", ct->host);
                nerr++;
            }
            if (!rc && cu->circuit_breaker &&
                !(u->targets[j].circuit = tp_circuit_new(cu->circuit_breaker)))
                return TP_ENOMEM;
            if (!rc) {
                /* the per-address entry outlives this snapshot (reloads keep health and
                 * connection counts); without healthchecks it simply stays up */
                u->targets[j].health = tp_health_acquire(&u->targets[j].addr,
                                                         u->targets[j].addrlen);
                if (!u->targets[j].health)
                    return TP_ENOMEM;
            }
        }
    }
    for (size_t i = 0; i < cfg->num_upstreams; i++)
        if (init_hashing(&s->upstreams[i], &cfg->upstreams[i]) != 0)
            return TP_ENOMEM;
    for (size_t i = 0; i < cfg->num_services; i++) {
        const struct tp_conf_service *cs = &cfg->services[i];
        struct tp_service *svc = &s->services[i];
        svc->conf = cs;
        if (cs->circuit_breaker && !(svc->circuit = tp_circuit_new(cs->circuit_breaker)))
            return TP_ENOMEM;
        const struct tp_conf_upstream *cu = tp_config_find_upstream(cfg, cs->host);
        if (cu) {
            svc->upstream = &s->upstreams[cu - cfg->upstreams];
            svc->host_is_upstream = 1;
            continue;
        }
        struct tp_upstream *u = &s->upstreams[s->num_upstreams++];
        if (init_upstream(u, cs->name, TP_LB_ROUND_ROBIN, 1, s->nworkers))
            return TP_ENOMEM;
        int rc = init_target(&u->targets[0], cs->host, cs->port, 100, s->nworkers);
        if (rc == TP_ENOMEM)
            return rc;
        if (!rc && !(u->targets[0].health = tp_health_acquire(&u->targets[0].addr,
                                                               u->targets[0].addrlen)))
            return TP_ENOMEM;
        if (rc) {
            report(errors, cfg, cs->mark, "cannot resolve service host ", cs->host);
            nerr++;
        }
        svc->upstream = u;
    }
    return nerr ? TP_EINVAL : 0;
}

static struct tp_route_cond *conds_of(const struct tp_conf_cond *c, size_t n)
{
    struct tp_route_cond *out = calloc(n ? n : 1, sizeof(*out));
    for (size_t i = 0; out && i < n; i++) {
        out[i].name = c[i].name;
        out[i].values = (const char *const *)c[i].values;
        out[i].num_values = c[i].num_values;
    }
    return out;
}

static struct tp_service *find_service(struct tp_snapshot *s, const char *name)
{
    for (size_t i = 0; i < s->num_services; i++)
        if (strcmp(s->services[i].conf->name, name) == 0)
            return &s->services[i];
    return NULL;
}

/* Resolve a route's split shares to services, with cumulative weights for the draw. */
static int build_split(struct tp_snapshot *s, struct tp_route *rt, FILE *errors)
{
    const struct tp_conf_route *cr = rt->conf;
    if (cr->mirror && !(rt->mirror = find_service(s, cr->mirror))) {
        report(errors, s->config, cr->mirror_mark, "mirror: no service named ", cr->mirror);
        return TP_EINVAL;
    }
    if (rt->mirror && rt->mirror == rt->service) {
        /* every request would reach the production service twice */
        report(errors, s->config, cr->mirror_mark, "mirror: a route cannot mirror to its own "
               "service ", cr->mirror);
        return TP_EINVAL;
    }
    if (cr->num_split == 0) {
        if (cr->split_header || cr->split_cookie) {
            report(errors, s->config, cr->mark, "split_sticky without split", NULL);
            return TP_EINVAL;
        }
        return 0;
    }
    rt->split_services = calloc(cr->num_split, sizeof(*rt->split_services));
    rt->split_cumulative = calloc(cr->num_split, sizeof(*rt->split_cumulative));
    if (!rt->split_services || !rt->split_cumulative)
        return TP_ENOMEM;
    uint32_t total = 0;
    int rc = 0;
    for (size_t k = 0; k < cr->num_split; k++) {
        rt->split_services[k] = find_service(s, cr->split[k].service);
        if (!rt->split_services[k]) {
            report(errors, s->config, cr->split[k].mark, "split: no service named ",
                   cr->split[k].service);
            rc = TP_EINVAL;
        }
        for (size_t j = 0; j < k && rt->split_services[k]; j++) {
            if (rt->split_services[j] == rt->split_services[k]) {
                report(errors, s->config, cr->split[k].mark, "split: service listed twice: ",
                       cr->split[k].service);
                rc = TP_EINVAL;
            }
        }
        total += cr->split[k].weight;
        rt->split_cumulative[k] = total;
    }
    rt->num_split = cr->num_split;
    return rc;
}

static int build_routes(struct tp_snapshot *s, FILE *errors)
{
    struct tp_config *cfg = s->config;
    size_t n = 0;
    int nerr = 0;
    for (size_t i = 0; i < cfg->num_services; i++)
        n += cfg->services[i].num_routes;
    s->routes = calloc(n ? n : 1, sizeof(*s->routes));
    s->router = tp_router_new();
    if (!s->routes || !s->router)
        return TP_ENOMEM;
    for (size_t i = 0; i < cfg->num_services; i++) {
        const struct tp_conf_service *cs = &cfg->services[i];
        for (size_t j = 0; j < cs->num_routes; j++) {
            const struct tp_conf_route *cr = &cs->routes[j];
            struct tp_route *rt = &s->routes[s->num_routes++];
            rt->conf = cr;
            rt->service = &s->services[i];
            int src = build_split(s, rt, errors);
            if (src == TP_ENOMEM)
                return src;
            nerr += src != 0;
            struct tp_route_cond *hc = conds_of(cr->headers, cr->num_headers);
            struct tp_route_cond *qc = conds_of(cr->query, cr->num_query);
            struct tp_route_spec spec = {
                .name = cr->name,
                .hosts = (const char *const *)cr->hosts, .num_hosts = cr->num_hosts,
                .paths = (const char *const *)cr->paths, .num_paths = cr->num_paths,
                .methods = (const char *const *)cr->methods, .num_methods = cr->num_methods,
                .headers = hc, .num_headers = cr->num_headers,
                .query = qc, .num_query = cr->num_query,
                .priority = cr->priority,
                .udata = rt,
            };
            char err[256] = "";
            int rc = (hc && qc) ? tp_router_add(s->router, &spec, err, sizeof(err)) : TP_ENOMEM;
            free(hc);
            free(qc);
            if (rc == TP_ENOMEM)
                return rc;
            if (rc) {
                report(errors, cfg, cr->mark, "invalid route: ", err);
                nerr++;
            }
        }
    }
    if (nerr)
        return TP_EINVAL;
    return tp_router_compile(s->router);
}

int tp_snapshot_build(struct tp_config *cfg, int nworkers, FILE *errors,
                      struct tp_snapshot **out)
{
    static atomic_ulong generation;
    struct tp_snapshot *s = calloc(1, sizeof(*s));
    if (!s) {
        tp_config_free(cfg);
        return TP_ENOMEM;
    }
    atomic_init(&s->refs, 1);
    s->config = cfg;
    s->nworkers = nworkers;
    s->generation = atomic_fetch_add(&generation, 1) + 1;
    s->services = calloc(cfg->num_services ? cfg->num_services : 1, sizeof(*s->services));
    s->num_services = cfg->num_services;
    int rc = s->services ? build_upstreams(s, errors) : TP_ENOMEM;
    if (rc == 0)
        rc = build_routes(s, errors);
    if (rc == 0)
        rc = tp__snapshot_build_plugins(s, errors);
    if (rc) {
        tp_snapshot_unref(s);
        return rc;
    }
    *out = s;
    return 0;
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Is t's current address among the addresses its name resolves to now? */
static int target_moved(const struct tp_target *t)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)t->port);
    int rc = getaddrinfo(t->host, portstr, &hints, &res);
    if (rc != 0 || !res) {
        tp_log(TP_LOG_WARN, "re-resolving %s: %s; keeping %s", t->name, gai_strerror(rc),
               t->addr_text);
        return 0;
    }
    int moved = 1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        if (ai->ai_addrlen == t->addrlen && memcmp(ai->ai_addr, &t->addr, t->addrlen) == 0)
            moved = 0;
    freeaddrinfo(res);
    return moved;
}

int tp_snapshot_dns_changed(const struct tp_snapshot *s)
{
    for (size_t i = 0; i < s->num_upstreams; i++) {
        const struct tp_upstream *u = &s->upstreams[i];
        for (size_t j = 0; j < u->num_targets; j++) {
            const struct tp_target *t = &u->targets[j];
            if (t->host && !is_ip_literal(t->host) && target_moved(t)) {
                tp_log(TP_LOG_NOTICE, "target %s no longer resolves to %s", t->name,
                       t->addr_text);
                return 1;
            }
        }
    }
    return 0;
}

void tp_snapshot_ref(struct tp_snapshot *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

static void free_upstream(struct tp_upstream *u)
{
    for (size_t j = 0; u->targets && j < u->num_targets; j++) {
        tp_health_release(u->targets[j].health);
        tp_circuit_free(u->targets[j].circuit);
        free(u->targets[j].host);
        free(u->targets[j].name);
        free(u->targets[j].host_header);
        free(u->targets[j].pools);
    }
    free(u->targets);
    free(u->swrr_current);
    free(u->p2c_rng);
    tp_upstream_ring_free(u);
    free(u->name);
}

void tp_snapshot_unref(struct tp_snapshot *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    tp__snapshot_free_plugins(s);
    for (size_t i = 0; i < s->num_upstreams; i++)
        free_upstream(&s->upstreams[i]);
    free(s->upstreams);
    for (size_t i = 0; s->services && i < s->num_services; i++)
        tp_circuit_free(s->services[i].circuit);
    free(s->services);
    for (size_t i = 0; s->routes && i < s->num_routes; i++) {
        free(s->routes[i].split_services);
        free(s->routes[i].split_cumulative);
    }
    free(s->routes);
    tp_router_free(s->router);
    tp_config_free(s->config);
    free(s);
}
