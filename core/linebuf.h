/* linebuf.h - splits a byte stream into lines, with no limit on line length
 * but memory. Bytes are appended where linebuf_space() says; each complete
 * line (without its '\n') is handed to a callback; scanning only looks at new
 * bytes, so a 16 MB line costs O(16 MB), not O(n^2). */
#ifndef ORCH_LINEBUF_H
#define ORCH_LINEBUF_H

#include <stddef.h>

typedef struct orch_linebuf {
    char *buf;
    size_t len;  /* bytes held */
    size_t cap;  /* bytes allocated */
    size_t scan; /* bytes already searched for '\n' */
} orch_linebuf;

typedef void (*orch_linebuf_fn)(const char *line, size_t len, void *ud);

void orch_linebuf_init(orch_linebuf *lb);
void orch_linebuf_free(orch_linebuf *lb);

/* Ensures at least `want` free bytes at the end and returns where to write
 * them (NULL on out of memory); *avail gets the free size. */
char *orch_linebuf_space(orch_linebuf *lb, size_t want, size_t *avail);

/* Records that n bytes were written at the space returned above, and calls
 * fn for every line now complete. */
void orch_linebuf_commit(orch_linebuf *lb, size_t n, orch_linebuf_fn fn,
                         void *ud);

/* At end of stream: hands any unterminated remainder to fn as a last line. */
void orch_linebuf_finish(orch_linebuf *lb, orch_linebuf_fn fn, void *ud);

#endif
