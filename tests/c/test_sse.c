/* test_sse.c - the SSE parser: fields, line ends, comments, BOM, splits at
 * every byte offset, and a 10 MB event. */
#include "sse.h"

#include "t.h"

#include <errno.h>

/* Events recorded as "type|id|retry|data\x1e" into a growing string. */
typedef struct rec {
    char *s;
    size_t len, cap;
    int n;
    int stop_at; /* return 1 from the callback on this event (1-based) */
    orch_sse *self;
    int reentry_rc;
} rec;

static void rec_add(rec *r, const char *s, size_t n)
{
    if (r->len + n + 1 > r->cap) {
        r->cap = (r->len + n + 1) * 2;
        r->s = realloc(r->s, r->cap);
        if (!r->s)
            abort();
    }
    memcpy(r->s + r->len, s, n);
    r->len += n;
    r->s[r->len] = '\0';
}

static int rec_cb(const orch_sse_event *ev, void *ud)
{
    rec *r = ud;
    char num[32];

    r->n++;
    if (r->self)
        r->reentry_rc = orch_sse_feed(r->self, "x", 1);
    rec_add(r, ev->type, ev->type_len);
    rec_add(r, "|", 1);
    rec_add(r, ev->id, ev->id_len);
    snprintf(num, sizeof num, "|%ld|", ev->retry);
    rec_add(r, num, strlen(num));
    rec_add(r, ev->data, ev->data_len);
    rec_add(r, "\x1e", 1);
    if (ev->type[ev->type_len] != '\0' || ev->id[ev->id_len] != '\0')
        abort(); /* type and id are NUL-terminated (data need not be) */
    return r->stop_at && r->n == r->stop_at;
}

/* Parses `in` (n bytes) fed in pieces cut at the given offsets. */
static char *parse_cuts(const char *in, size_t n, const size_t *cuts,
                        int ncuts)
{
    rec r = {0};
    orch_sse *p = orch_sse_new(rec_cb, &r);
    size_t at = 0;

    for (int i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        if (orch_sse_feed(p, in + at, to - at) != 0)
            abort();
        at = to;
    }
    orch_sse_free(p);
    rec_add(&r, "", 0);
    return r.s;
}

static char *parse_all(const char *in)
{
    return parse_cuts(in, strlen(in), NULL, 0);
}

static void check_splits(const char *in, const char *want)
{
    size_t n = strlen(in);
    char *whole = parse_all(in);
    int bad2 = 0, bad3 = 0;

    T_EQ_STR(whole, want);
    for (size_t a = 0; a <= n; a++) {
        char *got = parse_cuts(in, n, &a, 1);
        if (strcmp(got, want) != 0)
            bad2++;
        free(got);
    }
    T_EQ_INT(bad2, 0);
    /* Every pair of cut points too (covers CR | LF and BOM splits). */
    for (size_t a = 0; a <= n && n <= 400; a++) {
        for (size_t b = a; b <= n; b++) {
            size_t cuts[2] = {a, b};
            char *got = parse_cuts(in, n, cuts, 2);
            if (strcmp(got, want) != 0)
                bad3++;
            free(got);
        }
    }
    T_EQ_INT(bad3, 0);
    {
        /* One byte at a time. */
        size_t *cuts = malloc(sizeof *cuts * (n ? n : 1));
        for (size_t i = 0; i < n; i++)
            cuts[i] = i;
        char *got = parse_cuts(in, n, cuts, (int)n);
        T_EQ_STR(got, want);
        free(got);
        free(cuts);
    }
    free(whole);
}

static void test_basic(void)
{
    check_splits("data: hello\n\n", "message||-1|hello\x1e");
    check_splits("event: delta\ndata: {\"a\":1}\n\n"
                 "data: two\n\n",
                 "delta||-1|{\"a\":1}\x1emessage||-1|two\x1e");
    /* Multi-line data joined by \n; only one leading space removed. */
    check_splits("data: a\ndata:b\ndata:  c\ndata\n\n",
                 "message||-1|a\nb\n c\n\x1e");
    /* Empty data line still dispatches an empty event. */
    check_splits("data\n\ndata:\n\n", "message||-1|\x1emessage||-1|\x1e");
}

static void test_line_ends(void)
{
    const char *want = "x||-1|1\n2\x1emessage||-1|3\x1e";
    check_splits("event: x\r\ndata: 1\r\ndata: 2\r\n\r\ndata: 3\r\n\r\n", want);
    check_splits("event: x\rdata: 1\rdata: 2\r\rdata: 3\r\r", want);
    check_splits("event: x\ndata: 1\rdata: 2\r\n\ndata: 3\n\r", want);
    /* CR CR is two line ends: a blank line after the first. */
    check_splits("data: a\r\rdata: b\r\n\r\n", "message||-1|a\x1emessage||-1|b\x1e");
}

static void test_comments_and_fields(void)
{
    check_splits(": keep-alive\n:\n\ndata: x\n: mid\n\n",
                 "message||-1|x\x1e");
    /* Unknown fields and a field name with a space are ignored. */
    check_splits("foo: bar\ndata : no\nDATA: no\ndata: yes\n\n",
                 "message||-1|yes\x1e");
    /* id persists across events; an id with NUL is ignored; empty id. */
    {
        const char in[] = "id: 7\ndata: a\n\ndata: b\n\nid: 8\0x\ndata: c\n\n"
                          "id\ndata: d\n\n";
        size_t n = sizeof in - 1;
        char *got = parse_cuts(in, n, NULL, 0);
        T_EQ_STR(got, "message|7|-1|a\x1emessage|7|-1|b\x1emessage|7|-1|c\x1e"
                      "message||-1|d\x1e");
        free(got);
    }
    /* retry: digits only; belongs to the event it arrives in. */
    check_splits("retry: 1500\ndata: a\n\nretry: 12x\ndata: b\n\n"
                 "retry:\ndata: c\n\n",
                 "message||1500|a\x1emessage||-1|b\x1emessage||-1|c\x1e");
    /* An event with no data is not dispatched, and its type is forgotten. */
    check_splits("event: ping\n\ndata: x\n\n", "message||-1|x\x1e");
    /* An unfinished event at the end is dropped. */
    check_splits("data: a\n\ndata: b\n", "message||-1|a\x1e");
    check_splits("data: a\n\ndata: b", "message||-1|a\x1e");
    /* A colon in the value is kept. */
    check_splits("data: http://x:1/\n\n", "message||-1|http://x:1/\x1e");
}

static void test_bom(void)
{
    check_splits("\xEF\xBB\xBF" "data: a\n\n", "message||-1|a\x1e");
    /* Only one BOM, only at the start: a second one is part of a field. */
    check_splits("\xEF\xBB\xBF\xEF\xBB\xBF" "data: a\n\ndata: b\n\n",
                 "message||-1|b\x1e");
    /* A partial BOM is content. */
    check_splits("\xEF\xBB" "data: a\n\ndata: b\n\n", "message||-1|b\x1e");
    check_splits("\xEF" "\n" "data: b\n\n", "message||-1|b\x1e");
}

static void test_stop_and_busy(void)
{
    rec r = {0};
    orch_sse *p = orch_sse_new(rec_cb, &r);
    const char *in = "data: 1\n\ndata: 2\n\ndata: 3\n\n";

    r.stop_at = 2;
    T_EQ_INT(orch_sse_feed(p, in, strlen(in)), 1);
    T_EQ_INT(r.n, 2);
    r.self = p;
    r.stop_at = 0;
    T_EQ_INT(orch_sse_feed(p, "data: 4\n\n", 9), 0);
    T_EQ_INT(r.reentry_rc, -EBUSY);
    T_EQ_INT(orch_sse_reset(p), 0);
    T_EQ_STR(orch_sse_last_id(p), "");
    orch_sse_free(p);
    free(r.s);
}

/* A 10 MB event with two data lines, fed in 1000-byte pieces (10,000 feeds:
 * a parser that rescans its buffer on every feed would not finish). */
static void test_big_event(void)
{
    size_t big = 10u << 20;
    size_t n = big + 64;
    char *in = malloc(n);
    rec r = {0};
    orch_sse *p = orch_sse_new(rec_cb, &r);
    size_t len = 0, half = big / 2;
    int ok = 1;

    memcpy(in, "data: ", 6);
    len = 6;
    for (size_t i = 0; i < half; i++)
        in[len++] = (char)('a' + i % 26);
    memcpy(in + len, "\r\ndata:", 7);
    len += 7;
    for (size_t i = 0; i < big - half; i++)
        in[len++] = (char)('A' + i % 26);
    memcpy(in + len, "\r\n\r\n", 4);
    len += 4;
    for (size_t at = 0; at < len; at += 1000) {
        size_t k = len - at < 1000 ? len - at : 1000;
        if (orch_sse_feed(p, in + at, k) != 0)
            ok = 0;
    }
    T_CHECK(ok);
    T_EQ_INT(r.n, 1);
    /* "message||-1|" + data + "\x1e" */
    T_EQ_INT(r.len, 12 + big + 1 + 1);
    if (r.len == 12 + big + 2) {
        const char *d = r.s + 12;
        int good = 1;
        for (size_t i = 0; i < half; i++)
            if (d[i] != (char)('a' + i % 26))
                good = 0;
        if (d[half] != '\n')
            good = 0;
        for (size_t i = 0; i < big - half; i++)
            if (d[half + 1 + i] != (char)('A' + i % 26))
                good = 0;
        T_CHECK(good);
    }
    orch_sse_free(p);
    free(r.s);
    free(in);
}

int main(void)
{
    test_basic();
    test_line_ends();
    test_comments_and_fields();
    test_bom();
    test_stop_and_busy();
    test_big_event();
    T_DONE();
}
