/* lock.c - the file write-lock table (see lock.h). */
#include "lock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

void orch_locks_init(orch_locks *lt)
{
    memset(lt, 0, sizeof *lt);
    orch_strmap_init(&lt->paths);
}

void orch_locks_free(orch_locks *lt)
{
    orch_strmap_free(&lt->paths);
    free(lt->nodes);
    memset(lt, 0, sizeof *lt);
}

static int last_is_dotdot(const char *out, size_t base, size_t o)
{
    return o - base >= 3 && memcmp(out + o - 3, "../", 3) == 0 &&
           (o - 3 == base || out[o - 4] == '/');
}

int orch_lock_normalise(const char *in, size_t len, char *out, int *is_dir)
{
    size_t o = 0, i = 0, base;
    int dir = 0;

    if (len == 0)
        return orch_err_set(-EINVAL, "empty path");
    if (memchr(in, '\0', len))
        return orch_err_set(-EINVAL, "path contains a NUL byte");
    if (in[0] == '/')
        out[o++] = '/';
    base = o;
    /* out holds "seg/seg/.../" after base; each segment keeps its slash */
    while (i < len) {
        size_t s = i;
        while (i < len && in[i] != '/')
            i++;
        size_t n = i - s;
        dir = (i < len) || n == 0 || (n == 1 && in[s] == '.') ||
              (n == 2 && in[s] == '.' && in[s + 1] == '.');
        if (i < len)
            i++;
        if (n == 0 || (n == 1 && in[s] == '.'))
            continue;
        if (n == 2 && in[s] == '.' && in[s + 1] == '.') {
            if (o > base && !last_is_dotdot(out, base, o)) {
                o--; /* pop "seg/" */
                while (o > base && out[o - 1] != '/')
                    o--;
                continue;
            }
            if (base == 1)
                continue; /* "/.." is "/" */
        }
        memcpy(out + o, in + s, n);
        o += n;
        out[o++] = '/';
    }
    if (o == base)
        dir = 1; /* the root */
    if (!dir && o > base)
        o--; /* a file: no trailing slash */
    out[o] = '\0';
    *is_dir = dir;
    return (int)o;
}

static int locks_intern(orch_locks *lt, const char *p, size_t len, int is_dir)
{
    int idx = (int)lt->n, old = -1, rc;
    const char *stored = NULL;

    if (lt->n == lt->cap) {
        size_t cap = lt->cap ? lt->cap * 2 : 16;
        orch_lock_node *nodes = realloc(lt->nodes, cap * sizeof *nodes);
        if (!nodes)
            return orch_err_set(-ENOMEM, "out of memory");
        lt->nodes = nodes;
        lt->cap = cap;
    }
    rc = orch_strmap_put(&lt->paths, p, len, idx, &old, &stored);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return old;
    lt->nodes[idx] = (orch_lock_node){ .holder = -1, .is_dir = is_dir,
                                       .path = stored };
    lt->n++;
    return idx;
}

void orch_lockset_free(orch_lockset *set)
{
    free(set->ent);
    free(set->anc);
    memset(set, 0, sizeof *set);
}

static int set_push_anc(orch_lockset *set, int *cap, int node)
{
    if (set->nanc == *cap) {
        int ncap = *cap ? *cap * 2 : 8;
        int *anc = realloc(set->anc, (size_t)ncap * sizeof *anc);
        if (!anc)
            return orch_err_set(-ENOMEM, "out of memory");
        set->anc = anc;
        *cap = ncap;
    }
    set->anc[set->nanc++] = node;
    return 0;
}

int orch_locks_compile(orch_locks *lt, const char *const *paths,
                       const size_t *lens, size_t n, orch_lockset *set)
{
    char *buf = NULL;
    size_t bufcap = 0;
    int rc = 0, anccap = 0;

    memset(set, 0, sizeof *set);
    if (n == 0)
        return 0;
    set->ent = calloc(n, sizeof *set->ent);
    if (!set->ent) {
        rc = orch_err_set(-ENOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t k = 0; k < n; k++) {
        size_t len = lens ? lens[k] : strlen(paths[k]);
        int is_dir, node, dup = 0;
        if (len + 2 > bufcap) {
            free(buf);
            bufcap = len + 64;
            if (!(buf = malloc(bufcap))) {
                rc = orch_err_set(-ENOMEM, "out of memory");
                goto cleanup;
            }
        }
        int plen = orch_lock_normalise(paths[k], len, buf, &is_dir);
        if (plen < 0) {
            rc = plen;
            goto cleanup;
        }
        if ((node = locks_intern(lt, buf, (size_t)plen, is_dir)) < 0) {
            rc = node;
            goto cleanup;
        }
        for (int j = 0; j < set->n; j++)
            dup |= set->ent[j].node == node;
        if (dup)
            continue;
        orch_lock_entry *e = &set->ent[set->n++];
        e->node = node;
        e->anc_off = set->nanc;
        if (buf[0] != '/' && plen > 0) { /* the root of a relative path */
            int r = locks_intern(lt, "", 0, 1);
            if (r < 0 || (rc = set_push_anc(set, &anccap, r)) < 0) {
                rc = r < 0 ? r : rc;
                goto cleanup;
            }
        }
        for (int i = 0; i < plen - 1; i++) {
            if (buf[i] != '/')
                continue;
            int a = locks_intern(lt, buf, (size_t)i + 1, 1);
            if (a < 0 || (rc = set_push_anc(set, &anccap, a)) < 0) {
                rc = a < 0 ? a : rc;
                goto cleanup;
            }
        }
        e->anc_len = set->nanc - e->anc_off;
    }
cleanup:
    free(buf);
    if (rc < 0)
        orch_lockset_free(set);
    return rc;
}

int orch_locks_try(orch_locks *lt, const orch_lockset *set, int owner,
                   int *blocker)
{
    for (int k = 0; k < set->n; k++) {
        const orch_lock_entry *e = &set->ent[k];
        const orch_lock_node *nd = &lt->nodes[e->node];
        if (nd->held) {
            *blocker = nd->holder;
            return -EBUSY;
        }
        if (nd->is_dir && nd->under) {
            *blocker = -1;
            return -EBUSY;
        }
        for (int a = 0; a < e->anc_len; a++) {
            const orch_lock_node *an = &lt->nodes[set->anc[e->anc_off + a]];
            if (an->held) {
                *blocker = an->holder;
                return -EBUSY;
            }
        }
    }
    for (int k = 0; k < set->n; k++) {
        const orch_lock_entry *e = &set->ent[k];
        lt->nodes[e->node].held++;
        lt->nodes[e->node].holder = owner;
        for (int a = 0; a < e->anc_len; a++)
            lt->nodes[set->anc[e->anc_off + a]].under++;
    }
    return 0;
}

void orch_locks_release(orch_locks *lt, const orch_lockset *set)
{
    for (int k = 0; k < set->n; k++) {
        const orch_lock_entry *e = &set->ent[k];
        orch_lock_node *nd = &lt->nodes[e->node];
        if (nd->held > 0 && --nd->held == 0)
            nd->holder = -1;
        for (int a = 0; a < e->anc_len; a++)
            lt->nodes[set->anc[e->anc_off + a]].under--;
    }
}

static int entry_has_anc(const orch_lockset *s, const orch_lock_entry *e,
                         int node)
{
    for (int a = 0; a < e->anc_len; a++)
        if (s->anc[e->anc_off + a] == node)
            return 1;
    return 0;
}

int orch_locks_overlap(const orch_locks *lt, const orch_lockset *a,
                       const orch_lockset *b)
{
    for (int i = 0; i < a->n; i++) {
        const orch_lock_entry *x = &a->ent[i];
        for (int j = 0; j < b->n; j++) {
            const orch_lock_entry *y = &b->ent[j];
            if (x->node == y->node)
                return 1;
            if (lt->nodes[x->node].is_dir && entry_has_anc(b, y, x->node))
                return 1;
            if (lt->nodes[y->node].is_dir && entry_has_anc(a, x, y->node))
                return 1;
        }
    }
    return 0;
}

const char *orch_locks_path(const orch_locks *lt, int node)
{
    return node >= 0 && (size_t)node < lt->n ? lt->nodes[node].path : NULL;
}
