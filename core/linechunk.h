/* linechunk.h - lines gathered into one buffer and handed on as a batch.
 *
 * A task may print a million lines a second; a call into Lua (and a row in
 * the store) per line is what costs. The framer (linebuf.h) hands lines one
 * by one; a chunk joins them with '\n' (a line never holds one) so that the
 * reader of a pipe hands one chunk per read to its owner: the bytes, the
 * number of lines in them and the longest line's length.
 *
 * Memory: a chunk is flushed before it would pass ORCH_LINECHUNK_MAX bytes,
 * so its buffer never grows past that; a longer line is handed on as a
 * chunk of its own, straight from the caller's memory (never copied: a
 * task's 16 MiB line costs no second 16 MiB here). */
#ifndef ORCH_LINECHUNK_H
#define ORCH_LINECHUNK_H

#include <stddef.h>

#define ORCH_LINECHUNK_MAX ((size_t)256 * 1024)

typedef void (*orch_linechunk_fn)(const char *data, size_t len, size_t nlines,
                                  size_t maxlen, void *ud);

typedef struct orch_linechunk {
    char *buf;
    size_t len, cap;
    size_t nlines; /* lines in buf */
    size_t maxlen; /* the longest of them */
    orch_linechunk_fn fn;
    void *ud;
} orch_linechunk;

void orch_linechunk_init(orch_linechunk *c, orch_linechunk_fn fn, void *ud);
void orch_linechunk_free(orch_linechunk *c);

/* Appends one line (flushing first when it would not fit). Without memory
 * for it the chunk is flushed and the line handed on alone: nothing is
 * lost. */
void orch_linechunk_add(orch_linechunk *c, const char *line, size_t len);

/* Hands the lines gathered so far to fn (nothing when there are none). */
void orch_linechunk_flush(orch_linechunk *c);

#endif
