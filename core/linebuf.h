/* linebuf.h - splits a byte stream into lines: the one line framer of the
 * core (process output in proc.c, control-socket frames in ctl.c).
 *
 * Bytes are appended where orch_linebuf_space() says (or copied in by
 * orch_linebuf_feed()); each complete line (without its '\n') is handed to
 * a callback; scanning only looks at new bytes, so a 16 MB line costs
 * O(16 MB), not O(n^2).
 *
 * With no limit a line may use any amount of memory. orch_linebuf_limit()
 * bounds what one line may hold, in one of two ways:
 *
 *   ORCH_LINEBUF_CUT   a longer line keeps its head and its tail (max/2
 *                      bytes each) around a marker
 *                      " [... orch cut N bytes ...] ": the line delivered
 *                      is at most max + ORCH_LINEBUF_MARK_MAX bytes, and
 *                      the buffer never holds much more than 1.5 * max
 *                      (process output: a task may print a 500 MB line).
 *   ORCH_LINEBUF_DROP  a longer line is reported once, as soon as it passes
 *                      max, with line NULL and len the bytes seen so far;
 *                      the rest of it, up to its '\n', is skipped (control
 *                      frames: an oversized request is an error). */
#ifndef ORCH_LINEBUF_H
#define ORCH_LINEBUF_H

#include <stddef.h>

enum { ORCH_LINEBUF_CUT = 0, ORCH_LINEBUF_DROP = 1 };

#define ORCH_LINEBUF_MARK_MAX 48 /* the longest cut marker */
#define ORCH_LINEBUF_MIN_LIMIT 64

typedef struct orch_linebuf {
    char *buf;
    size_t len;  /* bytes held */
    size_t cap;  /* bytes allocated */
    size_t scan; /* bytes already searched for '\n' */
    size_t max;  /* 0: no limit */
    int mode;
    int discarding; /* DROP: skipping an oversized line to its '\n' */
    size_t cut;     /* CUT: bytes taken out of the line being read */
    char *out;      /* CUT: where a cut line is put together */
} orch_linebuf;

/* Returns non-zero to stop: the bytes not yet delivered stay buffered and
 * the next commit (or feed) delivers them. line is NULL only for an
 * oversized line in DROP mode. */
typedef int (*orch_linebuf_fn)(const char *line, size_t len, void *ud);

void orch_linebuf_init(orch_linebuf *lb);
void orch_linebuf_free(orch_linebuf *lb);

/* Sets the limit (0: none; otherwise at least ORCH_LINEBUF_MIN_LIMIT) and
 * the mode. Call before the first bytes. */
void orch_linebuf_limit(orch_linebuf *lb, size_t max, int mode);

/* Ensures at least `want` free bytes at the end and returns where to write
 * them (NULL on out of memory); *avail gets the free size. */
char *orch_linebuf_space(orch_linebuf *lb, size_t want, size_t *avail);

/* Records that n bytes were written at the space returned above, and calls
 * fn for every line now complete. Returns 0, or 1 if fn stopped it. */
int orch_linebuf_commit(orch_linebuf *lb, size_t n, orch_linebuf_fn fn,
                        void *ud);

/* Copies len bytes in and commits them: 0, 1 if fn stopped, -ENOMEM. */
int orch_linebuf_feed(orch_linebuf *lb, const char *data, size_t len,
                      orch_linebuf_fn fn, void *ud);

/* At end of stream: hands any unterminated remainder to fn as a last line
 * (cut like any other line; nothing in DROP mode while discarding). */
void orch_linebuf_finish(orch_linebuf *lb, orch_linebuf_fn fn, void *ud);

/* Drops whatever is buffered (a partial line). */
void orch_linebuf_reset(orch_linebuf *lb);

#endif
