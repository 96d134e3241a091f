/* linechunk.c - lines gathered into one buffer (linechunk.h). */
#include "linechunk.h"

#include <stdlib.h>
#include <string.h>

void orch_linechunk_init(orch_linechunk *c, orch_linechunk_fn fn, void *ud)
{
    memset(c, 0, sizeof *c);
    c->fn = fn;
    c->ud = ud;
}

void orch_linechunk_free(orch_linechunk *c)
{
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = c->nlines = c->maxlen = 0;
}

void orch_linechunk_flush(orch_linechunk *c)
{
    if (c->nlines == 0)
        return;
    /* reset before the call: fn may add lines of its own (it should not,
     * but then they start a new chunk instead of corrupting this one) */
    size_t len = c->len, n = c->nlines, max = c->maxlen;
    c->len = c->nlines = c->maxlen = 0;
    c->fn(c->buf, len, n, max, c->ud);
}

static int orch_linechunk_reserve(orch_linechunk *c, size_t want)
{
    size_t cap;
    char *b;
    if (want <= c->cap)
        return 0;
    cap = c->cap ? c->cap : 16384;
    while (cap < want)
        cap *= 2;
    b = realloc(c->buf, cap);
    if (!b)
        return -1;
    c->buf = b;
    c->cap = cap;
    return 0;
}

void orch_linechunk_add(orch_linechunk *c, const char *line, size_t len)
{
    size_t need = len + (c->nlines ? 1 : 0);
    if (len > ORCH_LINECHUNK_MAX) { /* a chunk of its own, not copied */
        orch_linechunk_flush(c);
        c->fn(line, len, 1, len, c->ud);
        return;
    }
    if (c->nlines && c->len + need > ORCH_LINECHUNK_MAX) {
        orch_linechunk_flush(c);
        need = len;
    }
    if (orch_linechunk_reserve(c, c->len + need) < 0) {
        orch_linechunk_flush(c);
        c->fn(line, len, 1, len, c->ud);
        return;
    }
    if (c->nlines)
        c->buf[c->len++] = '\n';
    if (len)
        memcpy(c->buf + c->len, line, len);
    c->len += len;
    c->nlines++;
    if (len > c->maxlen)
        c->maxlen = len;
}
