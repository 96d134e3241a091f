/* test_term.c - core/term.c without a terminal: a pipe and a regular file
 * are read on the loop to their end, the size of a non-terminal is 80 x 24,
 * and closing from inside the data callback stops the reading. */
#include "t.h"

#include "term.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

typedef struct got {
    char buf[256];
    size_t len;
    int ends, calls, close_after;
    orch_term *t;
} got;

static void on_data(const char *data, size_t n, void *arg)
{
    got *g = arg;
    g->calls++;
    if (n == 0) {
        g->ends++;
        return;
    }
    if (g->len + n < sizeof g->buf) {
        memcpy(g->buf + g->len, data, n);
        g->len += n;
    }
    if (g->close_after && g->calls >= g->close_after) {
        orch_term_close(g->t);
        g->t = NULL;
    }
}

static void read_fd(uv_loop_t *loop, int fd, got *g)
{
    orch_term_opts o = {0};
    o.fd = fd;
    o.raw = 1; /* ignored: not a terminal */
    o.on_data = on_data;
    o.arg = g;
    T_EQ_INT(orch_term_open(loop, &o, &g->t), 0);
    T_CHECK(!orch_term_is_tty(g->t));
    T_CHECK(!orch_term_is_raw(g->t));
    for (int i = 0; i < 1000 && g->ends == 0 && g->t; i++)
        uv_run(loop, UV_RUN_ONCE);
    if (g->t)
        orch_term_close(g->t);
    uv_run(loop, UV_RUN_DEFAULT); /* the close callbacks free it */
}

int main(void)
{
    uv_loop_t loop;
    int fds[2], cols = 0, rows = 0;
    char path[] = "/tmp/orch-test-term.XXXXXX";

    uv_loop_init(&loop);
    T_EQ_INT(orch_term_size(fds[0] = open("/dev/null", O_RDONLY), &cols, &rows), -ENOTTY);
    T_EQ_INT(cols, 80);
    T_EQ_INT(rows, 24);
    close(fds[0]);

    /* a pipe: what was written, then the end */
    T_EQ_INT(pipe(fds), 0);
    T_EQ_INT(write(fds[1], "hello\n", 6), 6);
    close(fds[1]);
    {
        got g = {0};
        read_fd(&loop, fds[0], &g);
        T_EQ_INT(g.len, 6);
        T_CHECK(memcmp(g.buf, "hello\n", 6) == 0);
        T_EQ_INT(g.ends, 1);
    }
    close(fds[0]);

    /* a regular file */
    {
        int fd = mkstemp(path);
        got g = {0};
        T_CHECK(fd >= 0);
        T_EQ_INT(write(fd, "abc", 3), 3);
        lseek(fd, 0, SEEK_SET);
        read_fd(&loop, fd, &g);
        T_EQ_INT(g.len, 3);
        T_EQ_INT(g.ends, 1);
        close(fd);
        unlink(path);
    }

    /* closed from its own callback: no end is reported after */
    T_EQ_INT(pipe(fds), 0);
    T_EQ_INT(write(fds[1], "x", 1), 1);
    {
        got g = {0};
        g.close_after = 1;
        read_fd(&loop, fds[0], &g);
        T_EQ_INT(g.len, 1);
        T_EQ_INT(g.ends, 0);
    }
    close(fds[0]);
    close(fds[1]);

    T_EQ_INT(uv_loop_close(&loop), 0);
    T_DONE();
}
