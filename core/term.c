/* term.c - orch's own input on the loop (see term.h). */
#include "term.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

enum { TERM_TTY, TERM_PIPE, TERM_FILE };

struct orch_term {
    union {
        uv_handle_t h;
        uv_tty_t tty;
        uv_pipe_t pipe;
        uv_timer_t timer; /* a regular file: read(2) never blocks, a chunk per tick */
    } u;
    uv_signal_t winch;
    int kind, fd, raw, watching, closing, pending, ended;
    orch_term_data_fn on_data;
    orch_term_resize_fn on_resize;
    void *arg;
    char buf[65536];
};

int orch_term_size(int fd, int *cols, int *rows)
{
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
        *cols = ws.ws_col;
        *rows = ws.ws_row;
        return 0;
    }
    *cols = 80;
    *rows = 24;
    return -ENOTTY;
}

void orch_term_restore(void)
{
    uv_tty_reset_mode();
}

int orch_term_is_tty(const orch_term *t)
{
    return t->kind == TERM_TTY;
}

int orch_term_is_raw(const orch_term *t)
{
    return t->raw;
}

static void term_closed(uv_handle_t *h)
{
    orch_term *t = h->data;
    if (--t->pending == 0)
        free(t);
}

static void term_end(orch_term *t)
{
    if (t->ended || t->closing)
        return;
    t->ended = 1;
    t->on_data(NULL, 0, t->arg);
}

static void term_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    orch_term *t = h->data;
    (void)hint;
    buf->base = t->buf;
    buf->len = sizeof t->buf;
}

static void term_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    orch_term *t = s->data;
    if (n > 0) {
        t->on_data(buf->base, (size_t)n, t->arg);
    } else if (n < 0) {
        uv_read_stop(s);
        term_end(t);
    }
}

static void term_tick(uv_timer_t *h)
{
    orch_term *t = h->data;
    ssize_t n = read(t->fd, t->buf, sizeof t->buf);
    if (n < 0 && errno == EINTR)
        return;
    if (n <= 0) {
        uv_timer_stop(h);
        term_end(t);
        return;
    }
    t->on_data(t->buf, (size_t)n, t->arg);
}

static void term_winch(uv_signal_t *h, int signum)
{
    orch_term *t = h->data;
    int cols, rows;
    (void)signum;
    orch_term_size(t->fd, &cols, &rows);
    if (t->on_resize && !t->closing)
        t->on_resize(cols, rows, t->arg);
}

void orch_term_close(orch_term *t)
{
    if (!t || t->closing)
        return;
    t->closing = 1;
    if (t->kind == TERM_TTY) {
        uv_read_stop((uv_stream_t *)&t->u.tty);
        if (t->raw)
            uv_tty_reset_mode();
    } else if (t->kind == TERM_PIPE) {
        uv_read_stop((uv_stream_t *)&t->u.pipe);
    } else {
        uv_timer_stop(&t->u.timer);
    }
    t->pending = 1 + t->watching;
    if (t->watching)
        uv_close((uv_handle_t *)&t->winch, term_closed);
    uv_close(&t->u.h, term_closed);
}

int orch_term_open(uv_loop_t *loop, const orch_term_opts *o, orch_term **out)
{
    uv_handle_type type = uv_guess_handle(o->fd);
    orch_term *t = calloc(1, sizeof *t);
    int rc;

    *out = NULL;
    if (!t)
        return -ENOMEM;
    t->fd = o->fd;
    t->on_data = o->on_data;
    t->on_resize = o->on_resize;
    t->arg = o->arg;
    if (type == UV_TTY) {
        t->kind = TERM_TTY;
        rc = uv_tty_init(loop, &t->u.tty, o->fd, 1);
    } else if (type == UV_NAMED_PIPE) {
        t->kind = TERM_PIPE;
        rc = uv_pipe_init(loop, &t->u.pipe, 0);
        if (rc == 0 && (rc = uv_pipe_open(&t->u.pipe, o->fd)) < 0) {
            t->u.h.data = t;
            t->pending = 1;
            uv_close(&t->u.h, term_closed); /* frees t */
            return rc;
        }
    } else {
        t->kind = TERM_FILE;
        rc = uv_timer_init(loop, &t->u.timer);
    }
    if (rc < 0) {
        free(t);
        return rc;
    }
    t->u.h.data = t;
    if (t->kind == TERM_TTY && o->raw)
        t->raw = uv_tty_set_mode(&t->u.tty, UV_TTY_MODE_RAW) == 0;
    if (t->kind == TERM_TTY && o->on_resize) {
        uv_signal_init(loop, &t->winch);
        t->winch.data = t;
        t->watching = 1;
        if (uv_signal_start(&t->winch, term_winch, SIGWINCH) == 0)
            uv_unref((uv_handle_t *)&t->winch);
    }
    if (t->kind == TERM_FILE)
        rc = uv_timer_start(&t->u.timer, term_tick, 0, 1);
    else
        rc = uv_read_start((uv_stream_t *)&t->u.h, term_alloc, term_read);
    if (rc < 0) {
        orch_term_close(t);
        return rc;
    }
    *out = t;
    return 0;
}
