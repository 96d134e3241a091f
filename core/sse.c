/* sse.c - incremental Server-Sent Events parser (see sse.h). */
#include "sse.h"

#include "err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A growable byte buffer, always NUL-terminated when p != NULL. */
typedef struct sse_buf {
    char *p;
    size_t len;
    size_t cap;
} sse_buf;

struct orch_sse {
    orch_sse_cb cb;
    void *ud;
    sse_buf line;  /* the current line while it is incomplete */
    sse_buf data;  /* data lines of the current event, each + "\n" */
    sse_buf type;  /* the current event's type ("" = message) */
    sse_buf id;    /* the last event id */
    /* The first data line of the current event, while it is still in the
     * bytes being fed: not copied unless a second data line comes or the
     * feed returns before the event ends (see sse_data_keep). */
    const char *pend;
    size_t pend_len;
    int has_pend;
    long retry;    /* last retry value, -1 if none */
    long ev_retry; /* retry seen in the current event, -1 if none */
    int bom_pos;   /* bytes of a BOM matched so far at stream start */
    int bom_done;  /* the BOM check is over */
    int skip_lf;   /* the last chunk ended with CR: skip a leading LF */
    int in_cb;     /* inside the callback */
};

static const char sse_bom[3] = {'\xEF', '\xBB', '\xBF'};

/* Buffers larger than this are released after an event instead of kept. */
#define SSE_KEEP_CAP (1u << 20)

static int sse_buf_reserve(sse_buf *b, size_t extra)
{
    size_t need, cap;
    char *np;

    if (extra > (size_t)-1 - b->len - 1)
        return orch_err_set(-ENOMEM, "sse: event too large");
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > (size_t)-1 / 2 ? need : cap * 2;
    np = realloc(b->p, cap);
    if (!np)
        return orch_err_set(-ENOMEM, "sse: out of memory (%zu bytes)", cap);
    b->p = np;
    b->cap = cap;
    return 0;
}

static int sse_buf_append(sse_buf *b, const char *s, size_t n)
{
    int rc = sse_buf_reserve(b, n);
    if (rc < 0)
        return rc;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int sse_buf_set(sse_buf *b, const char *s, size_t n)
{
    b->len = 0;
    return sse_buf_append(b, s, n);
}

/* Empties the buffer, releasing its memory if it grew large. */
static void sse_buf_clear(sse_buf *b)
{
    b->len = 0;
    if (b->cap > SSE_KEEP_CAP) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    } else if (b->p) {
        b->p[0] = '\0';
    }
}

static void sse_buf_free(sse_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

orch_sse *orch_sse_new(orch_sse_cb cb, void *ud)
{
    orch_sse *p = calloc(1, sizeof *p);
    if (!p) {
        orch_err_set(-ENOMEM, "sse: out of memory");
        return NULL;
    }
    p->cb = cb;
    p->ud = ud;
    p->retry = -1;
    p->ev_retry = -1;
    return p;
}

void orch_sse_free(orch_sse *p)
{
    if (!p)
        return;
    sse_buf_free(&p->line);
    sse_buf_free(&p->data);
    sse_buf_free(&p->type);
    sse_buf_free(&p->id);
    free(p);
}

int orch_sse_reset(orch_sse *p)
{
    if (p->in_cb)
        return orch_err_set(-EBUSY, "sse: reset from inside the callback");
    sse_buf_clear(&p->line);
    sse_buf_clear(&p->data);
    sse_buf_clear(&p->type);
    sse_buf_clear(&p->id);
    p->retry = p->ev_retry = -1;
    p->bom_pos = p->bom_done = p->skip_lf = 0;
    p->has_pend = 0;
    return 0;
}

const char *orch_sse_last_id(const orch_sse *p)
{
    return p->id.p ? p->id.p : "";
}

long orch_sse_retry(const orch_sse *p)
{
    return p->retry;
}

/* Copies a pending first data line into the data buffer (before the bytes it
 * points into go away, or when a second data line comes). */
static int sse_data_keep(orch_sse *p)
{
    int rc;

    if (!p->has_pend)
        return 0;
    p->has_pend = 0;
    rc = sse_buf_reserve(&p->data, p->pend_len + 1);
    if (rc < 0)
        return rc;
    memcpy(p->data.p + p->data.len, p->pend, p->pend_len);
    p->data.len += p->pend_len;
    p->data.p[p->data.len++] = '\n';
    p->data.p[p->data.len] = '\0';
    return 0;
}

/* An empty line: dispatches the event if it has data. */
static int sse_dispatch(orch_sse *p)
{
    orch_sse_event ev;
    int rc;

    if (p->has_pend) {
        /* one data line, still in the fed bytes: no copy */
        ev.data = p->pend;
        ev.data_len = p->pend_len;
        p->has_pend = 0;
    } else if (p->data.len == 0) {
        sse_buf_clear(&p->type);
        p->ev_retry = -1;
        return 0;
    } else {
        p->data.len--; /* the "\n" after the last data line */
        p->data.p[p->data.len] = '\0';
        ev.data = p->data.p;
        ev.data_len = p->data.len;
    }
    ev.type = p->type.len ? p->type.p : "message";
    ev.type_len = p->type.len ? p->type.len : 7;
    ev.id = p->id.p ? p->id.p : "";
    ev.id_len = p->id.len;
    ev.retry = p->ev_retry;
    p->in_cb = 1;
    rc = p->cb ? p->cb(&ev, p->ud) : 0;
    p->in_cb = 0;
    sse_buf_clear(&p->data);
    sse_buf_clear(&p->type);
    p->ev_retry = -1;
    return rc;
}

static void sse_retry(orch_sse *p, const char *v, size_t n)
{
    long r = 0;

    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return;
        if (r < (long)(0x7fffffffL / 10))
            r = r * 10 + (v[i] - '0');
        else
            r = 0x7fffffffL; /* saturate */
    }
    p->retry = p->ev_retry = r;
}

/* One complete line, without its line end; in_place: s points into the bytes
 * being fed (not into p->line). */
static int sse_line(orch_sse *p, const char *s, size_t n, int in_place)
{
    const char *colon, *v;
    size_t fn, vn;
    int rc;

    if (n == 0)
        return sse_dispatch(p);
    if (s[0] == ':')
        return 0; /* comment */
    colon = memchr(s, ':', n);
    if (colon) {
        fn = (size_t)(colon - s);
        v = colon + 1;
        vn = n - fn - 1;
        if (vn && v[0] == ' ') {
            v++;
            vn--;
        }
    } else {
        fn = n;
        v = "";
        vn = 0;
    }
    if (fn == 4 && memcmp(s, "data", 4) == 0) {
        if (in_place && !p->has_pend && p->data.len == 0) {
            p->pend = v;
            p->pend_len = vn;
            p->has_pend = 1;
            return 0;
        }
        rc = sse_data_keep(p);
        if (rc == 0)
            rc = sse_buf_reserve(&p->data, vn + 1);
        if (rc < 0)
            return rc;
        memcpy(p->data.p + p->data.len, v, vn);
        p->data.len += vn;
        p->data.p[p->data.len++] = '\n';
        p->data.p[p->data.len] = '\0';
        return 0;
    }
    if (fn == 5 && memcmp(s, "event", 5) == 0)
        return sse_buf_set(&p->type, v, vn);
    if (fn == 2 && memcmp(s, "id", 2) == 0) {
        if (memchr(v, '\0', vn))
            return 0;
        return sse_buf_set(&p->id, v, vn);
    }
    if (fn == 5 && memcmp(s, "retry", 5) == 0)
        sse_retry(p, v, vn);
    return 0;
}

/* Splits bytes into lines; complete lines inside `buf` are parsed in place,
 * only a line still incomplete at the end of a chunk is copied. A line ends
 * at the first LF or CR: the next CR is looked for once per chunk (and again
 * only past it), so a stream without CRs is scanned once, by the LF search. */
static int sse_lines(orch_sse *p, const char *buf, size_t len)
{
    const char *cr = NULL; /* the next CR at or after buf, if cr_valid */
    int cr_valid = 0;
    int rc;

    while (len > 0) {
        const char *nl, *end;
        size_t n, adv;

        if (p->skip_lf) {
            p->skip_lf = 0;
            if (buf[0] == '\n') {
                buf++;
                len--;
                continue;
            }
        }
        if (!cr_valid || (cr && cr < buf)) {
            cr = memchr(buf, '\r', len);
            cr_valid = 1;
        }
        nl = memchr(buf, '\n', cr ? (size_t)(cr - buf) : len);
        end = nl ? nl : cr;
        if (!end)
            return sse_buf_append(&p->line, buf, len);
        n = (size_t)(end - buf);
        adv = n + 1;
        if (end == cr) {
            if (adv < len) {
                if (buf[adv] == '\n')
                    adv++;
            } else {
                p->skip_lf = 1;
            }
        }
        if (p->line.len) {
            rc = sse_buf_append(&p->line, buf, n);
            if (rc == 0)
                rc = sse_line(p, p->line.p, p->line.len, 0);
            sse_buf_clear(&p->line);
        } else {
            rc = sse_line(p, buf, n, 1);
        }
        if (rc != 0)
            return rc;
        buf += adv;
        len -= adv;
    }
    return 0;
}

/* sse_lines, then a first data line left pending in `buf` is copied: buf is
 * the caller's and goes away when the feed returns. */
static int sse_bytes(orch_sse *p, const char *buf, size_t len)
{
    int rc = sse_lines(p, buf, len);
    int krc = sse_data_keep(p);

    return rc != 0 ? rc : krc;
}

int orch_sse_feed(orch_sse *p, const char *buf, size_t len)
{
    if (p->in_cb)
        return orch_err_set(-EBUSY, "sse: feed from inside the callback");
    if (!p->bom_done) {
        while (len > 0 && p->bom_pos < 3 && buf[0] == sse_bom[p->bom_pos]) {
            p->bom_pos++;
            buf++;
            len--;
        }
        if (p->bom_pos == 3) {
            p->bom_done = 1;
        } else if (len > 0) {
            int rc;
            /* Not a BOM after all: the bytes held back are content. */
            p->bom_done = 1;
            rc = sse_bytes(p, sse_bom, (size_t)p->bom_pos);
            if (rc != 0)
                return rc;
        }
    }
    return sse_bytes(p, buf, len);
}
