/* fuzz_ctl.c - the control socket's framer (core/linebuf.c in DROP mode)
 * on arbitrary bytes: it must never crash or buffer much more than its
 * limit, and feeding the same bytes
 * whole, in two pieces, or byte by byte must give the same frames (checked
 * by a running hash of every frame and oversize report). The first byte
 * picks a small frame limit so that oversized frames are exercised. */
#include "linebuf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz {
    uint64_t h;
    size_t n, max;
} fz;

static void fz_mix(fz *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        f->h = (f->h ^ (uint8_t)s[i]) * 1099511628211ull;
    f->h = (f->h ^ 0xff) * 1099511628211ull;
}

static int fz_cb(const char *d, size_t len, void *ud)
{
    fz *f = ud;
    f->n++;
    if (d == NULL) {
        if (len <= f->max)
            abort();
        fz_mix(f, "\1BIG", 4);
        return 0;
    }
    if (len > f->max || memchr(d, '\n', len))
        abort();
    fz_mix(f, d, len);
    return 0;
}

static fz fz_run(const uint8_t *data, size_t size, size_t max, size_t step,
                 size_t cut)
{
    fz f = {14695981039346656037ull, 0, max};
    orch_linebuf fr;
    orch_linebuf_init(&fr);
    orch_linebuf_limit(&fr, max, ORCH_LINEBUF_DROP);
    if (cut <= size) {
        orch_linebuf_feed(&fr, (const char *)data, cut, fz_cb, &f);
        orch_linebuf_feed(&fr, (const char *)data + cut, size - cut, fz_cb, &f);
    } else {
        for (size_t at = 0; at < size; at += step)
            orch_linebuf_feed(&fr, (const char *)data + at,
                              size - at < step ? size - at : step, fz_cb, &f);
    }
    if (fr.len > max)
        abort();
    orch_linebuf_finish(&fr, fz_cb, &f);
    orch_linebuf_free(&fr);
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t max;
    fz a, b, c;
    if (size == 0)
        return 0;
    max = ORCH_LINEBUF_MIN_LIMIT + data[0] % 64;
    data++;
    size--;
    a = fz_run(data, size, max, 0, size);
    b = fz_run(data, size, max, 0, size / 2);
    c = fz_run(data, size, max, 1, (size_t)-1);
    if (a.h != b.h || a.n != b.n || a.h != c.h || a.n != c.n)
        abort();
    return 0;
}
