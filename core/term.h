/* term.h - orch's own input, read on the loop without blocking: a terminal
 * (optionally in raw mode), a pipe, or a file; the terminal's size, and its
 * changes (SIGWINCH). Plain C, for the Lua binding (orch.core.ctl.stdin) and
 * a C TUI alike.
 *
 *   orch_term *t;
 *   orch_term_opts o = { .fd = 0, .raw = 1, .on_data = fn, .on_resize = fn2, .arg = me };
 *   if (orch_term_open(loop, &o, &t) < 0) ...
 *   ...
 *   orch_term_close(t);      // stops reading, restores the mode; freed by the loop
 *
 * A terminal put in raw mode is restored by orch_term_close, and on every
 * exit path of the shutdown sequence (orch_term_restore). */
#ifndef ORCH_TERM_H
#define ORCH_TERM_H

#include <stddef.h>
#include <uv.h>

/* Bytes read (n > 0), or the end of the input (data NULL, n 0; called once). */
typedef void (*orch_term_data_fn)(const char *data, size_t n, void *arg);
/* The terminal's new size (columns, rows) after a SIGWINCH. */
typedef void (*orch_term_resize_fn)(int cols, int rows, void *arg);

typedef struct orch_term_opts {
    int fd;                        /* what to read (0: stdin) */
    int raw;                       /* a terminal: raw mode (no echo, no line editing, no signals keys) */
    orch_term_data_fn on_data;     /* required */
    orch_term_resize_fn on_resize; /* optional: watch SIGWINCH (a terminal only) */
    void *arg;
} orch_term_opts;

typedef struct orch_term orch_term;

/* 0 and *out, or a negative errno (nothing to close then). */
int orch_term_open(uv_loop_t *loop, const orch_term_opts *o, orch_term **out);

/* Whether it reads a terminal; whether raw mode was set. */
int orch_term_is_tty(const orch_term *t);
int orch_term_is_raw(const orch_term *t);

/* Stops reading and watching, restores the terminal's mode; the memory is
 * released once the loop has closed the handles. No callback after this. */
void orch_term_close(orch_term *t);

/* The size of the terminal on fd: 0, or -ENOTTY with 80 x 24. */
int orch_term_size(int fd, int *cols, int *rows);

/* Restores a terminal left in raw mode (async-signal-safe; for exits). */
void orch_term_restore(void);

#endif
