/* fuzz_sse.c - the SSE parser on arbitrary bytes: it must never crash, and
 * feeding the same bytes whole, in two pieces, or byte by byte must give the
 * same events (checked by a running hash of every event). */
#include "sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz {
    uint64_t h;
    size_t n;
} fz;

static void fz_mix(fz *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        f->h = (f->h ^ (uint8_t)s[i]) * 1099511628211ull;
    f->h = (f->h ^ 0xff) * 1099511628211ull;
}

static int fz_cb(const orch_sse_event *ev, void *ud)
{
    fz *f = ud;

    if (ev->type[ev->type_len] != '\0' || ev->type_len == 0)
        abort();
    f->n++;
    fz_mix(f, ev->type, ev->type_len);
    fz_mix(f, ev->data, ev->data_len);
    fz_mix(f, ev->id, ev->id_len);
    fz_mix(f, (const char *)&ev->retry, sizeof ev->retry);
    return 0;
}

static fz fz_run(const uint8_t *data, size_t size, size_t step, size_t cut)
{
    fz f = {14695981039346656037ull, 0};
    orch_sse *p = orch_sse_new(fz_cb, &f);

    if (!p)
        abort();
    if (cut <= size) {
        orch_sse_feed(p, (const char *)data, cut);
        orch_sse_feed(p, (const char *)data + cut, size - cut);
    } else {
        for (size_t at = 0; at < size; at += step)
            orch_sse_feed(p, (const char *)data + at,
                          size - at < step ? size - at : step);
    }
    orch_sse_free(p);
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz whole = fz_run(data, size, 0, size);
    fz half = fz_run(data, size, 0, size ? data[0] % (size + 1) : 0);
    fz bytes = fz_run(data, size, 1, (size_t)-1);
    fz threes = fz_run(data, size, 3, (size_t)-1);

    if (whole.h != half.h || whole.n != half.n || whole.h != bytes.h ||
        whole.n != bytes.n || whole.h != threes.h || whole.n != threes.n)
        abort();
    return 0;
}
