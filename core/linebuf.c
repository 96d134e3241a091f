/* linebuf.c - line framing of a byte stream (see linebuf.h). */
#include "linebuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINEBUF_CHUNK 65536

void orch_linebuf_init(orch_linebuf *lb)
{
    memset(lb, 0, sizeof *lb);
}

void orch_linebuf_free(orch_linebuf *lb)
{
    free(lb->buf);
    free(lb->out);
    memset(lb, 0, sizeof *lb);
}

void orch_linebuf_limit(orch_linebuf *lb, size_t max, int mode)
{
    if (max && max < ORCH_LINEBUF_MIN_LIMIT)
        max = ORCH_LINEBUF_MIN_LIMIT;
    lb->max = max;
    lb->mode = mode;
}

void orch_linebuf_reset(orch_linebuf *lb)
{
    lb->len = 0;
    lb->scan = 0;
    lb->cut = 0;
    lb->discarding = 0;
}

char *orch_linebuf_space(orch_linebuf *lb, size_t want, size_t *avail)
{
    if (lb->cap - lb->len < want) {
        size_t cap = lb->cap ? lb->cap : LINEBUF_CHUNK;
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

/* Delivers one complete line; in CUT mode a line over the limit becomes
 * its head, a marker and its tail. lb->cut bytes were already taken out of
 * its middle (only ever the first line in the buffer). */
static int linebuf_emit(orch_linebuf *lb, const char *line, size_t len,
                        orch_linebuf_fn fn, void *ud)
{
    size_t head, tail, cut, n;
    int m;

    if (!lb->max || lb->mode != ORCH_LINEBUF_CUT || len + lb->cut <= lb->max)
        return fn(line, len, ud);
    head = lb->max / 2;
    tail = lb->max - head;
    cut = lb->cut + (len - head - tail);
    if (!lb->out && !(lb->out = malloc(lb->max + ORCH_LINEBUF_MARK_MAX + 1)))
        return fn(line, head, ud); /* out of memory: the head alone */
    memcpy(lb->out, line, head);
    m = snprintf(lb->out + head, ORCH_LINEBUF_MARK_MAX + 1,
                 " [... orch cut %zu bytes ...] ", cut);
    n = head + (m > 0 ? (size_t)m : 0);
    memcpy(lb->out + n, line + len - tail, tail);
    return fn(lb->out, n + tail, ud);
}

/* After the complete lines: bound the partial line left at the start. */
static int linebuf_bound(orch_linebuf *lb, orch_linebuf_fn fn, void *ud)
{
    if (!lb->max || lb->len <= lb->max)
        return 0;
    if (lb->mode == ORCH_LINEBUF_DROP) {
        size_t seen = lb->len;
        orch_linebuf_reset(lb);
        lb->discarding = 1;
        return fn(NULL, seen, ud);
    }
    if (lb->len > lb->max + lb->max / 2) {
        /* keep the head and the last (max - head) bytes */
        size_t head = lb->max / 2, tail = lb->max - head;
        memmove(lb->buf + head, lb->buf + lb->len - tail, tail);
        lb->cut += lb->len - head - tail;
        lb->len = head + tail;
        lb->scan = lb->len;
    }
    return 0;
}

static int linebuf_scan(orch_linebuf *lb, orch_linebuf_fn fn, void *ud)
{
    size_t start = 0;
    int stop = 0;
    char *nl;

    while (!stop) {
        if (lb->discarding) {
            nl = memchr(lb->buf + start, '\n', lb->len - start);
            if (!nl) {
                start = lb->len;
                lb->scan = lb->len;
                break;
            }
            start = (size_t)(nl - lb->buf) + 1;
            lb->scan = start;
            lb->discarding = 0;
            continue;
        }
        nl = memchr(lb->buf + lb->scan, '\n', lb->len - lb->scan);
        if (!nl) {
            lb->scan = lb->len;
            break;
        }
        {
            size_t end = (size_t)(nl - lb->buf), n = end - start;
            if (lb->max && lb->mode == ORCH_LINEBUF_DROP && n > lb->max)
                stop = fn(NULL, n, ud);
            else
                stop = linebuf_emit(lb, lb->buf + start, n, fn, ud);
            start = end + 1;
            lb->scan = start;
            lb->cut = 0;
        }
    }
    if (start > 0) {
        memmove(lb->buf, lb->buf + start, lb->len - start);
        lb->len -= start;
        lb->scan -= start;
    }
    if (!stop)
        stop = linebuf_bound(lb, fn, ud);
    /* Give back memory after a huge line has gone. */
    if (lb->len == 0 && lb->cap > (1u << 20)) {
        free(lb->buf);
        lb->buf = NULL;
        lb->cap = 0;
        lb->scan = 0;
    }
    return stop ? 1 : 0;
}

int orch_linebuf_commit(orch_linebuf *lb, size_t n, orch_linebuf_fn fn,
                        void *ud)
{
    lb->len += n;
    if (lb->len == 0)
        return 0;
    return linebuf_scan(lb, fn, ud);
}

int orch_linebuf_feed(orch_linebuf *lb, const char *data, size_t len,
                      orch_linebuf_fn fn, void *ud)
{
    do {
        size_t avail, take = len < LINEBUF_CHUNK ? len : LINEBUF_CHUNK;
        char *at = orch_linebuf_space(lb, take, &avail);
        if (!at)
            return -ENOMEM;
        memcpy(at, data, take);
        data += take;
        len -= take;
        if (orch_linebuf_commit(lb, take, fn, ud))
            return 1;
    } while (len > 0);
    return 0;
}

void orch_linebuf_finish(orch_linebuf *lb, orch_linebuf_fn fn, void *ud)
{
    if (lb->len > 0 && !lb->discarding)
        linebuf_emit(lb, lb->buf, lb->len, fn, ud);
    orch_linebuf_reset(lb);
}
