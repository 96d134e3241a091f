/* linebuf.c - line framing of a byte stream (see linebuf.h). */
#include "linebuf.h"

#include <stdlib.h>
#include <string.h>

void orch_linebuf_init(orch_linebuf *lb)
{
    memset(lb, 0, sizeof *lb);
}

void orch_linebuf_free(orch_linebuf *lb)
{
    free(lb->buf);
    memset(lb, 0, sizeof *lb);
}

char *orch_linebuf_space(orch_linebuf *lb, size_t want, size_t *avail)
{
    if (lb->cap - lb->len < want) {
        size_t cap = lb->cap ? lb->cap : 65536;
        char *nb;
        while (cap - lb->len < want)
            cap *= 2;
        nb = realloc(lb->buf, cap);
        if (!nb)
            return NULL;
        lb->buf = nb;
        lb->cap = cap;
    }
    *avail = lb->cap - lb->len;
    return lb->buf + lb->len;
}

void orch_linebuf_commit(orch_linebuf *lb, size_t n, orch_linebuf_fn fn,
                         void *ud)
{
    size_t start = 0;
    char *nl;

    lb->len += n;
    while ((nl = memchr(lb->buf + lb->scan, '\n', lb->len - lb->scan))) {
        size_t end = (size_t)(nl - lb->buf);
        fn(lb->buf + start, end - start, ud);
        start = end + 1;
        lb->scan = start;
    }
    lb->scan = lb->len;
    if (start > 0) {
        memmove(lb->buf, lb->buf + start, lb->len - start);
        lb->len -= start;
        lb->scan -= start;
    }
    /* Give back memory after a huge line has gone. */
    if (lb->len == 0 && lb->cap > (1u << 20)) {
        free(lb->buf);
        lb->buf = NULL;
        lb->cap = 0;
        lb->scan = 0;
    }
}

void orch_linebuf_finish(orch_linebuf *lb, orch_linebuf_fn fn, void *ud)
{
    if (lb->len > 0)
        fn(lb->buf, lb->len, ud);
    lb->len = 0;
    lb->scan = 0;
}
