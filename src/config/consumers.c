/*
 * turnpike — consumers, credentials and plugin chains in the snapshot (include/turnpike/
 * consumer.h, src/plugins/chain.h).
 *
 * Built on the main thread after the routes: consumers get a stable id, credentials go into
 * open-addressing hash tables keyed by a seeded XXH64 (the seed is random per snapshot, so table
 * positions say nothing about the keys), plain-text basic-auth passwords are replaced by their
 * yescrypt hash, every plugin entry is compiled once, and every route gets its chain.
 */
#include "config/plugins_internal.h"
#include "plugins/chain.h"
#include "turnpike/consumer.h"
#include "turnpike/log.h"
#include "turnpike/snapshot.h"
#include "upstream/hash_key.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct cred_slot {
    uint64_t hash;
    const struct tp_credential *cred; /* NULL = empty */
    const char *key;                  /* the string hashed (borrowed from the config) */
};

struct cred_table {
    struct cred_slot *slots;
    size_t mask;
};

struct tp_consumers {
    uint64_t seed;
    struct tp_consumer *consumers;
    size_t num_consumers;
    char *ids;                        /* derived ids, 37 bytes each */
    struct tp_credential *creds;      /* all credentials */
    size_t num_creds;
    const struct tp_credential **jwt; /* jwt secrets in config order */
    size_t num_jwt;
    struct cred_table keys, basics, jwts, names;
    struct tp_plugin_instance *instances;
    size_t num_instances;
    const struct tp_plugin_instance **consumer_items; /* per consumer, sliced */
};

/* ---- tables ---- */

static int table_init(struct cred_table *t, size_t n)
{
    size_t cap = 8;
    while (cap < n * 2)
        cap <<= 1;
    t->slots = calloc(cap, sizeof(*t->slots));
    t->mask = cap - 1;
    return t->slots ? 0 : TP_ENOMEM;
}

static void table_put(struct cred_table *t, uint64_t seed, const char *key,
                      const struct tp_credential *cred)
{
    uint64_t h = tp_hash64(key, strlen(key), seed);
    size_t i = (size_t)h & t->mask;
    while (t->slots[i].cred)
        i = (i + 1) & t->mask;
    t->slots[i] = (struct cred_slot){h, cred, key};
}

static const struct tp_credential *table_get(const struct cred_table *t, uint64_t seed,
                                             struct tp_slice key)
{
    if (!t->slots)
        return NULL;
    uint64_t h = tp_hash64(key.ptr, key.len, seed);
    for (size_t i = (size_t)h & t->mask; t->slots[i].cred; i = (i + 1) & t->mask) {
        const struct cred_slot *s = &t->slots[i];
        /* CRYPTO_memcmp: the comparison of a candidate secret takes the same time wherever
         * the first differing byte is */
        if (s->hash == h && strlen(s->key) == key.len &&
            CRYPTO_memcmp(s->key, key.ptr, key.len) == 0)
            return s->cred;
    }
    return NULL;
}

/* ---- lookups (any thread) ---- */

const struct tp_credential *tp_consumer_find_key(const struct tp_snapshot *s, struct tp_slice key)
{
    return s->consumers ? table_get(&s->consumers->keys, s->consumers->seed, key) : NULL;
}

const struct tp_credential *tp_consumer_find_basic(const struct tp_snapshot *s,
                                                   struct tp_slice username)
{
    return s->consumers ? table_get(&s->consumers->basics, s->consumers->seed, username) : NULL;
}

const struct tp_credential *tp_consumer_find_jwt(const struct tp_snapshot *s, struct tp_slice key)
{
    return s->consumers ? table_get(&s->consumers->jwts, s->consumers->seed, key) : NULL;
}

size_t tp_consumer_jwt_count(const struct tp_snapshot *s)
{
    return s->consumers ? s->consumers->num_jwt : 0;
}

const struct tp_credential *tp_consumer_jwt_at(const struct tp_snapshot *s, size_t i)
{
    return s->consumers && i < s->consumers->num_jwt ? s->consumers->jwt[i] : NULL;
}

const struct tp_consumer *tp_consumer_find(const struct tp_snapshot *s, struct tp_slice name)
{
    const struct tp_credential *c =
        s->consumers ? table_get(&s->consumers->names, s->consumers->seed, name) : NULL;
    return c ? c->consumer : NULL;
}

bool tp_consumer_in_group(const struct tp_consumer *c, struct tp_slice group)
{
    for (size_t i = 0; c && i < c->num_groups; i++)
        if (strlen(c->groups[i]) == group.len && memcmp(c->groups[i], group.ptr, group.len) == 0)
            return true;
    return false;
}

/* ---- building ---- */

/* A name-based UUID (RFC 9562 §5.5, version 5 layout over SHA-1) so that a consumer without an
 * `id` keeps the same X-Consumer-ID across reloads and restarts. */
static void derive_uuid(const char *kind, const char *name, char out[37])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    char in[512];
    int n = snprintf(in, sizeof(in), "turnpike:%s:%s", kind, name);
    if (n < 0 || (size_t)n >= sizeof(in))
        n = (int)sizeof(in) - 1;
    if (EVP_Digest(in, (size_t)n, d, NULL, EVP_sha1(), NULL) != 1)
        memset(d, 0, sizeof(d));
    d[6] = (unsigned char)((d[6] & 0x0f) | 0x50);
    d[8] = (unsigned char)((d[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[d[i] >> 4];
        out[o++] = hex[d[i] & 15];
    }
    out[o] = '\0';
}

static bool is_crypt_hash(const char *p)
{
    /* $y$ yescrypt, $gy$, $7$ scrypt, $2b$/$2a$/$2y$ bcrypt, $6$ / $5$ SHA-crypt */
    return p[0] == '$' && strchr(p + 1, '$') != NULL && strlen(p) >= 20;
}

/* Replace a plain-text password by its yescrypt hash (crypt(3), libxcrypt); wipe the text. */
static int hash_password(struct tp_conf_credential *cr, FILE *errors, const char *file)
{
    if (is_crypt_hash(cr->password)) {
        /* a hash libxcrypt cannot use would refuse every password, silently */
        int ok = crypt_checksalt(cr->password);
        if (ok == CRYPT_SALT_OK || ok == CRYPT_SALT_METHOD_LEGACY)
            return 0;
        if (errors)
            fprintf(errors, "%s:%d:%d: basic-auth password hash is not a usable crypt(3) hash\n",
                    file, cr->mark.line, cr->mark.column);
        return TP_EINVAL;
    }
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) ||
        !crypt_r(cr->password, salt, &cd) || cd.output[0] == '*') {
        if (errors)
            fprintf(errors, "%s:%d:%d: cannot hash the basic-auth password\n", file,
                    cr->mark.line, cr->mark.column);
        return TP_EINVAL;
    }
    char *h = strdup(cd.output);
    explicit_bzero(&cd, sizeof(cd));
    if (!h)
        return TP_ENOMEM;
    explicit_bzero(cr->password, strlen(cr->password));
    free(cr->password);
    cr->password = h;
    return 0;
}

static int add_creds(struct tp_consumers *cs, struct tp_consumer *c, struct tp_conf_credential *arr,
                     size_t n, const char *kind, FILE *errors, const char *file)
{
    for (size_t i = 0; i < n; i++) {
        struct tp_conf_credential *cr = &arr[i];
        struct tp_credential *t = &cs->creds[cs->num_creds];
        t->consumer = c;
        t->conf = cr;
        if (strcmp(kind, "key-auth") == 0) {
            if (cr->id) {
                t->id = cr->id;
            } else {
                char *id = cs->ids + 37 * (cs->num_consumers + cs->num_creds);
                char name[64];
                snprintf(name, sizeof(name), "%s#%zu", c->id, i);
                derive_uuid(kind, name, id);
                t->id = id;
            }
            table_put(&cs->keys, cs->seed, cr->key, t);
        } else if (strcmp(kind, "basic-auth") == 0) {
            int rc = hash_password(cr, errors, file);
            if (rc)
                return rc;
            t->id = cr->id ? cr->id : cr->username;
            table_put(&cs->basics, cs->seed, cr->username, t);
        } else {
            t->id = cr->id ? cr->id : cr->key;
            table_put(&cs->jwts, cs->seed, cr->key, t);
            cs->jwt[cs->num_jwt++] = t;
        }
        cs->num_creds++;
    }
    return 0;
}

static int build_consumers(struct tp_snapshot *s, struct tp_consumers *cs, FILE *errors)
{
    struct tp_config *cfg = s->config;
    size_t nc = cfg->num_consumers, nk = 0, nb = 0, nj = 0;
    for (size_t i = 0; i < nc; i++) {
        nk += cfg->consumers[i].num_keyauth;
        nb += cfg->consumers[i].num_basicauth;
        nj += cfg->consumers[i].num_jwt;
    }
    size_t ncred = nk + nb + nj;
    cs->consumers = calloc(nc ? nc : 1, sizeof(*cs->consumers));
    cs->creds = calloc(ncred + nc + 1, sizeof(*cs->creds)); /* + one name entry per consumer */
    cs->ids = calloc(nc + ncred + 1, 37);
    cs->jwt = calloc(nj + 1, sizeof(*cs->jwt));
    if (!cs->consumers || !cs->creds || !cs->ids || !cs->jwt || table_init(&cs->keys, nk) ||
        table_init(&cs->basics, nb) || table_init(&cs->jwts, nj) ||
        table_init(&cs->names, nc * 2))
        return TP_ENOMEM;
    cs->num_consumers = nc;
    for (size_t i = 0; i < nc; i++) {
        struct tp_conf_consumer *cc = &cfg->consumers[i];
        struct tp_consumer *c = &cs->consumers[i];
        c->conf = cc;
        c->username = cc->username;
        c->custom_id = cc->custom_id;
        c->groups = (const char *const *)cc->groups;
        c->num_groups = cc->num_groups;
        if (cc->id) {
            c->id = cc->id;
        } else {
            char *id = cs->ids + 37 * i;
            derive_uuid("consumer", cc->username ? cc->username : cc->custom_id, id);
            c->id = id;
        }
    }
    /* names: id first, then username (tp_consumer_find); the entries point at the consumer
     * through a credential-shaped record at the end of creds */
    struct tp_credential *named = cs->creds + ncred;
    for (size_t i = 0; i < nc; i++) {
        named[i].consumer = &cs->consumers[i];
        table_put(&cs->names, cs->seed, cs->consumers[i].id, &named[i]);
    }
    for (size_t i = 0; i < nc; i++)
        if (cs->consumers[i].username &&
            !table_get(&cs->names, cs->seed, tp_slice_cstr(cs->consumers[i].username)))
            table_put(&cs->names, cs->seed, cs->consumers[i].username, &named[i]);
    for (size_t i = 0; i < nc; i++) {
        struct tp_conf_consumer *cc = &cfg->consumers[i];
        struct tp_consumer *c = &cs->consumers[i];
        int rc = add_creds(cs, c, cc->keyauth, cc->num_keyauth, "key-auth", errors, cfg->path);
        rc = rc ? rc : add_creds(cs, c, cc->basicauth, cc->num_basicauth, "basic-auth", errors,
                                 cfg->path);
        rc = rc ? rc : add_creds(cs, c, cc->jwt, cc->num_jwt, "jwt", errors, cfg->path);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- plugin instances ---- */

static size_t count_instances(const struct tp_config *cfg)
{
    size_t n = cfg->num_plugins;
    for (size_t i = 0; i < cfg->num_services; i++) {
        n += cfg->services[i].num_plugins;
        for (size_t j = 0; j < cfg->services[i].num_routes; j++)
            n += cfg->services[i].routes[j].num_plugins;
    }
    for (size_t i = 0; i < cfg->num_consumers; i++)
        n += cfg->consumers[i].num_plugins;
    return n;
}

static int compile_instance(struct tp_snapshot *s, struct tp_plugin_instance *pi,
                            const struct tp_conf_plugin *p, FILE *errors)
{
    pi->plugin = p->plugin;
    pi->conf = p;
    pi->inst = p->conf;
    if (!p->plugin->compile)
        return 0;
    char path[160];
    snprintf(path, sizeof(path), "plugin %s", p->plugin->name);
    struct tp_plugin_build b = {.snap = s, .path = path, .line = p->mark.line,
                                .column = p->mark.column, .errors = errors,
                                .file = s->config->path};
    void *inst = NULL;
    if (p->plugin->compile(&b, p->conf, &inst) != 0 || b.num_errors) {
        if (!b.num_errors)
            tp_plugin_build_error(&b, NULL, "cannot be set up");
        return TP_EINVAL;
    }
    pi->inst = inst;
    pi->compiled = true;
    return 0;
}

/* Add one list of entries; consumer is set for consumer-scoped entries. */
static int add_instances(struct tp_snapshot *s, struct tp_consumers *cs,
                         const struct tp_conf_plugin *arr, size_t n, const char *service,
                         const char *route, const struct tp_consumer *consumer, FILE *errors)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const struct tp_conf_plugin *p = &arr[i];
        if (!p->enabled || !p->plugin)
            continue;
        struct tp_plugin_instance *pi = &cs->instances[cs->num_instances];
        const char *svc = p->service ? p->service : service;
        const char *rt = p->route ? p->route : route;
        const struct tp_consumer *con = consumer;
        if (p->consumer)
            con = tp_consumer_find(s, tp_slice_cstr(p->consumer));
        if (compile_instance(s, pi, p, errors) != 0) {
            rc = TP_EINVAL;
            continue;
        }
        pi->service = svc;
        pi->route = rt;
        pi->consumer = con;
        pi->specificity = tp_chain_specificity(con != NULL, rt != NULL, svc != NULL);
        cs->num_instances++;
    }
    return rc;
}

static int build_instances(struct tp_snapshot *s, struct tp_consumers *cs, FILE *errors)
{
    struct tp_config *cfg = s->config;
    size_t n = count_instances(cfg);
    cs->instances = calloc(n ? n : 1, sizeof(*cs->instances));
    cs->consumer_items = calloc(n ? n : 1, sizeof(*cs->consumer_items));
    if (!cs->instances || !cs->consumer_items)
        return TP_ENOMEM;
    int rc = add_instances(s, cs, cfg->plugins, cfg->num_plugins, NULL, NULL, NULL, errors);
    for (size_t i = 0; i < cfg->num_services; i++) {
        const struct tp_conf_service *sv = &cfg->services[i];
        rc |= add_instances(s, cs, sv->plugins, sv->num_plugins, sv->name, NULL, NULL, errors);
        for (size_t j = 0; j < sv->num_routes; j++)
            rc |= add_instances(s, cs, sv->routes[j].plugins, sv->routes[j].num_plugins, NULL,
                                sv->routes[j].name, NULL, errors);
    }
    for (size_t i = 0; i < cfg->num_consumers; i++)
        rc |= add_instances(s, cs, cfg->consumers[i].plugins, cfg->consumers[i].num_plugins, NULL,
                            NULL, &cs->consumers[i], errors);
    if (rc)
        return TP_EINVAL;
    /* each consumer's own instances, as one slice of consumer_items */
    size_t k = 0;
    for (size_t i = 0; i < cs->num_consumers; i++) {
        struct tp_consumer *c = &cs->consumers[i];
        c->plugins = cs->consumer_items + k;
        for (size_t j = 0; j < cs->num_instances; j++)
            if (cs->instances[j].consumer == c)
                cs->consumer_items[k++] = &cs->instances[j];
        c->num_plugins = (size_t)(cs->consumer_items + k - c->plugins);
    }
    return 0;
}

static int build_chains(struct tp_snapshot *s, struct tp_consumers *cs)
{
    for (size_t i = 0; i < s->num_routes; i++) {
        struct tp_route *r = &s->routes[i];
        struct tp_chain *ch = calloc(1, sizeof(*ch));
        if (!ch)
            return TP_ENOMEM;
        r->chain = ch;
        int rc = tp_chain_build(ch, cs->instances, cs->num_instances, r->service->conf->name,
                                r->conf->name, (const char *const *)r->conf->order,
                                r->conf->num_order);
        if (rc)
            return rc;
        /* a chain matters when some plugin may run, also only for consumers */
        bool consumer_plugins = false;
        for (size_t j = 0; j < cs->num_instances; j++)
            consumer_plugins |= cs->instances[j].consumer != NULL;
        if (ch->n == 0 && !consumer_plugins) {
            free(ch);
            r->chain = NULL;
        }
    }
    return 0;
}

int tp__snapshot_build_plugins(struct tp_snapshot *s, FILE *errors)
{
    struct tp_consumers *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return TP_ENOMEM;
    s->consumers = cs;
    if (getrandom(&cs->seed, sizeof(cs->seed), 0) != sizeof(cs->seed))
        cs->seed = (uint64_t)(uintptr_t)cs ^ 0x9e3779b97f4a7c15ULL;
    int rc = build_consumers(s, cs, errors);
    rc = rc ? rc : build_instances(s, cs, errors);
    return rc ? rc : build_chains(s, cs);
}

void tp__snapshot_free_plugins(struct tp_snapshot *s)
{
    struct tp_consumers *cs = s->consumers;
    for (size_t i = 0; s->routes && i < s->num_routes; i++) {
        if (s->routes[i].chain)
            free(s->routes[i].chain->items);
        free(s->routes[i].chain);
    }
    if (!cs)
        return;
    for (size_t i = 0; i < cs->num_instances; i++) {
        struct tp_plugin_instance *pi = &cs->instances[i];
        if (pi->compiled && pi->plugin->destroy)
            pi->plugin->destroy((void *)pi->inst);
    }
    free(cs->instances);
    free(cs->consumer_items);
    free(cs->consumers);
    free(cs->creds);
    free(cs->ids);
    free(cs->jwt);
    free(cs->keys.slots);
    free(cs->basics.slots);
    free(cs->jwts.slots);
    free(cs->names.slots);
    free(cs);
    s->consumers = NULL;
}
