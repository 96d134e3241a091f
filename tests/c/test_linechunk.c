/* test_linechunk.c - core/linechunk.c: lines joined into chunks with their
 * count and longest length, flushed before ORCH_LINECHUNK_MAX, a longer
 * line as a chunk of its own (not copied), empty lines kept, nothing lost or reordered. */
#include "t.h"

#include "linechunk.h"

typedef struct got {
    char *all; /* every chunk's data, each followed by '\n' */
    size_t len, cap;
    size_t lines, chunks, maxlen_seen, biggest;
    int bad_max; /* a chunk whose maxlen was not its longest line */
} got;

static void on_chunk(const char *data, size_t len, size_t n, size_t maxlen, void *ud)
{
    got *g = ud;
    size_t count = 1, cur = 0, longest = 0;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            count++;
            if (cur > longest)
                longest = cur;
            cur = 0;
        } else {
            cur++;
        }
    }
    if (cur > longest)
        longest = cur;
    T_EQ_INT(count, n);
    if (longest != maxlen)
        g->bad_max++;
    g->chunks++;
    g->lines += n;
    if (len > g->biggest)
        g->biggest = len;
    while (g->len + len + 1 > g->cap) {
        g->cap = g->cap ? g->cap * 2 : 4096;
        g->all = realloc(g->all, g->cap);
        if (!g->all)
            abort();
    }
    memcpy(g->all + g->len, data, len);
    g->len += len;
    g->all[g->len++] = '\n';
}

int main(void)
{
    orch_linechunk c;
    got g = {0};
    char line[64];
    char *want = NULL, *big = NULL;
    size_t wlen = 0, wcap = 0;

    orch_linechunk_init(&c, on_chunk, &g);
    orch_linechunk_flush(&c); /* nothing: no call */
    T_EQ_INT(g.chunks, 0);

    /* 100,000 numbered lines and an empty one every 1000th */
    wcap = 1u << 20;
    want = malloc(wcap);
    T_CHECK(want != NULL);
    for (int i = 1; i <= 100000; i++) {
        int n = i % 1000 == 0 ? 0 : snprintf(line, sizeof line, "line %d", i);
        orch_linechunk_add(&c, line, (size_t)n);
        if (wlen + (size_t)n + 1 > wcap) {
            wcap *= 2;
            want = realloc(want, wcap);
            if (!want)
                abort();
        }
        memcpy(want + wlen, line, (size_t)n);
        wlen += (size_t)n;
        want[wlen++] = '\n';
        if (i % 10000 == 0)
            orch_linechunk_flush(&c); /* the end of a read */
    }
    orch_linechunk_flush(&c);
    T_EQ_INT(g.lines, 100000);
    T_EQ_INT(g.len, wlen);
    T_CHECK(g.len == wlen && memcmp(g.all, want, wlen) == 0);
    T_CHECK(g.biggest <= ORCH_LINECHUNK_MAX);
    T_CHECK(g.chunks >= 10);
    T_EQ_INT(g.bad_max, 0);

    /* a line longer than the maximum is a chunk of its own, whole */
    big = malloc(ORCH_LINECHUNK_MAX * 2);
    T_CHECK(big != NULL);
    memset(big, 'x', ORCH_LINECHUNK_MAX * 2);
    g.chunks = g.lines = 0;
    orch_linechunk_add(&c, "before", 6);
    orch_linechunk_add(&c, big, ORCH_LINECHUNK_MAX * 2);
    orch_linechunk_add(&c, "after", 5);
    orch_linechunk_flush(&c);
    T_EQ_INT(g.lines, 3);
    T_EQ_INT(g.chunks, 3);
    T_EQ_INT(g.biggest, ORCH_LINECHUNK_MAX * 2);
    T_EQ_INT(g.bad_max, 0);
    T_CHECK(c.cap <= ORCH_LINECHUNK_MAX); /* the long line was never copied in */

    orch_linechunk_free(&c);
    free(big);
    free(want);
    free(g.all);
    T_DONE();
}
