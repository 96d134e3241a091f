/* strmap.c - a string -> int hash map owning its keys (see strmap.h). */
#include "strmap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

static uint64_t strmap_hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

void orch_strmap_init(orch_strmap *m)
{
    memset(m, 0, sizeof *m);
}

void orch_strmap_free(orch_strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t strmap_slot(char *const *keys, size_t cap, const char *key,
                          size_t len)
{
    size_t i = (size_t)strmap_hash(key, len) & (cap - 1);
    while (keys[i] && !(strlen(keys[i]) == len &&
                        memcmp(keys[i], key, len) == 0))
        i = (i + 1) & (cap - 1);
    return i;
}

int orch_strmap_get(const orch_strmap *m, const char *key, size_t len)
{
    if (m->cap == 0)
        return -1;
    size_t i = strmap_slot(m->keys, m->cap, key, len);
    return m->keys[i] ? m->vals[i] : -1;
}

static int strmap_grow(orch_strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    char **keys = calloc(cap, sizeof *keys);
    int *vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return orch_err_set(-ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = strmap_slot(keys, cap, m->keys[i], strlen(m->keys[i]));
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int orch_strmap_put(orch_strmap *m, const char *key, size_t len, int val,
                    int *old, const char **stored)
{
    int rc;
    if ((m->len + 1) * 2 > m->cap && (rc = strmap_grow(m)) < 0)
        return rc;
    size_t i = strmap_slot(m->keys, m->cap, key, len);
    if (m->keys[i]) {
        if (old)
            *old = m->vals[i];
        if (stored)
            *stored = m->keys[i];
        return 0;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return orch_err_set(-ENOMEM, "out of memory");
    memcpy(copy, key, len);
    copy[len] = '\0';
    m->keys[i] = copy;
    m->vals[i] = val;
    m->len++;
    if (stored)
        *stored = copy;
    return 1;
}
