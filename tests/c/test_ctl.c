/* test_ctl.c - the control socket's framer (core/linebuf.c), directory checks, server and
 * client on a real loop and real unix sockets. */
#include "t.h"

#include "ctl.h"
#include "err.h"
#include "linebuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ------------------------------------------------- framer (linebuf) */

typedef struct frames {
    char out[8192];
    size_t olen;
    int n, too_big;
    size_t big_len;
} frames;

static int collect(const char *data, size_t len, void *ud)
{
    frames *f = ud;
    if (!data) {
        f->too_big++;
        f->big_len = len;
        return 0;
    }
    if (f->olen + len + 1 < sizeof f->out) {
        memcpy(f->out + f->olen, data, len);
        f->olen += len;
        f->out[f->olen++] = '|';
        f->out[f->olen] = '\0';
    }
    f->n++;
    return 0;
}

static void test_framer_splits(void)
{
    const char *in = "return 1\n{\"id\":1,\"method\":\"status\"}\n\nlast";
    size_t n = strlen(in);
    for (size_t cut = 0; cut <= n; cut++) {
        orch_linebuf fr;
        frames f = {0};
        orch_linebuf_init(&fr);
        orch_linebuf_limit(&fr, ORCH_CTL_MAX_FRAME, ORCH_LINEBUF_DROP);
        orch_linebuf_feed(&fr, in, cut, collect, &f);
        orch_linebuf_feed(&fr, in + cut, n - cut, collect, &f);
        orch_linebuf_finish(&fr, collect, &f);
        T_EQ_INT(f.n, 4);
        T_EQ_STR(f.out, "return 1|{\"id\":1,\"method\":\"status\"}||last|");
        orch_linebuf_free(&fr);
    }
}

static void test_framer_too_big(void)
{
    orch_linebuf fr;
    frames f = {0};
    char big[300];
    memset(big, 'x', sizeof big);
    orch_linebuf_init(&fr);
    orch_linebuf_limit(&fr, 64, ORCH_LINEBUF_DROP);
    /* exactly the limit is fine */
    orch_linebuf_feed(&fr, big, 64, collect, &f);
    orch_linebuf_feed(&fr, "\n", 1, collect, &f);
    T_EQ_INT(f.n, 1);
    f.olen = 0;
    f.out[0] = '\0';
    /* one over, in pieces with no newline: reported once, then skipped */
    orch_linebuf_feed(&fr, big, 40, collect, &f);
    orch_linebuf_feed(&fr, big, 40, collect, &f);
    T_EQ_INT(f.too_big, 1);
    T_EQ_INT(f.big_len, 80);
    orch_linebuf_feed(&fr, big, sizeof big, collect, &f);
    T_EQ_INT(f.too_big, 1);
    orch_linebuf_feed(&fr, "tail\nok\n", 8, collect, &f);
    T_EQ_INT(f.n, 2);
    T_EQ_STR(f.out, "ok|");
    /* over the limit with its newline in the same chunk */
    char line[70];
    memset(line, 'y', 65);
    memcpy(line + 65, "\nnx\n", 4);
    orch_linebuf_feed(&fr, line, 69, collect, &f);
    T_EQ_INT(f.too_big, 2);
    T_EQ_INT(f.big_len, 65);
    T_EQ_INT(f.n, 3);
    T_EQ_STR(f.out, "ok|nx|");
    T_CHECK(fr.len == 0);
    orch_linebuf_free(&fr);
}

/* CUT mode (process output): a long line keeps its head and tail, and the
 * buffer stays near twice the limit however long the line. */
typedef struct cutlines {
    int n;
    size_t len;
    char head[8], tail[8];
    char mark[64];
} cutlines;

static int cut_collect(const char *data, size_t len, void *ud)
{
    cutlines *c = ud;
    const char *m = memmem(data, len, " [... orch cut ", 15);
    c->n++;
    c->len = len;
    memcpy(c->head, data, 4);
    memcpy(c->tail, data + len - 4, 4);
    c->mark[0] = '\0';
    if (m) {
        const char *e = memmem(m, len - (size_t)(m - data), "...] ", 5);
        size_t ml = e ? (size_t)(e - m) + 5 : 0;
        if (ml < sizeof c->mark) {
            memcpy(c->mark, m, ml);
            c->mark[ml] = '\0';
        }
    }
    return 0;
}

static void test_linebuf_cut(void)
{
    orch_linebuf lb;
    cutlines c = {0};
    char chunk[1000];
    size_t peak = 0;
    orch_linebuf_init(&lb);
    orch_linebuf_limit(&lb, 100, ORCH_LINEBUF_CUT);
    /* a 100,000-byte line: HEAD, then 'm's, then TAIL */
    orch_linebuf_feed(&lb, "HEAD", 4, cut_collect, &c);
    memset(chunk, 'm', sizeof chunk);
    for (int i = 0; i < 100; i++) {
        orch_linebuf_feed(&lb, chunk, sizeof chunk - (i == 99 ? 8 : 0), cut_collect, &c);
        if (lb.len > peak)
            peak = lb.len;
    }
    orch_linebuf_feed(&lb, "TAIL\nshort\n", 11, cut_collect, &c);
    T_EQ_INT(c.n, 2);
    T_CHECK(peak <= 150 + sizeof chunk);
    orch_linebuf_free(&lb);

    /* the first line, seen on its own */
    memset(&c, 0, sizeof c);
    orch_linebuf_init(&lb);
    orch_linebuf_limit(&lb, 100, ORCH_LINEBUF_CUT);
    orch_linebuf_feed(&lb, "HEAD", 4, cut_collect, &c);
    for (int i = 0; i < 100; i++)
        orch_linebuf_feed(&lb, chunk, sizeof chunk - (i == 99 ? 8 : 0), cut_collect, &c);
    orch_linebuf_feed(&lb, "TAIL\n", 5, cut_collect, &c);
    T_EQ_INT(c.n, 1);
    T_CHECK(!memcmp(c.head, "HEAD", 4));
    T_CHECK(!memcmp(c.tail, "TAIL", 4));
    /* 4 + 99,992 + 4 bytes, 100 kept */
    T_EQ_STR(c.mark, " [... orch cut 99900 bytes ...] ");
    T_CHECK(c.len <= 100 + ORCH_LINEBUF_MARK_MAX);
    /* a line at the limit is whole; an unterminated long one is cut too */
    orch_linebuf_feed(&lb, chunk, 100, cut_collect, &c);
    orch_linebuf_feed(&lb, "\n", 1, cut_collect, &c);
    T_EQ_INT(c.len, 100);
    T_EQ_STR(c.mark, "");
    orch_linebuf_feed(&lb, chunk, 150, cut_collect, &c);
    orch_linebuf_finish(&lb, cut_collect, &c);
    T_EQ_INT(c.n, 3);
    T_EQ_STR(c.mark, " [... orch cut 50 bytes ...] ");
    orch_linebuf_free(&lb);
}

/* ---------------------------------------------------------------- dirs */

static char tmp[256];

static void test_dirs(void)
{
    char dir[512], path[600], got[4096];
    snprintf(dir, sizeof dir, "%s/sock", tmp);
    T_EQ_INT(mkdir(dir, 0755), 0);
    T_EQ_INT(orch_ctl_check_dir(dir), -EACCES);
    T_CHECK(strstr(orch_err_msg(), "chmod 700") != NULL);
    chmod(dir, 0770);
    T_EQ_INT(orch_ctl_check_dir(dir), -EACCES);
    chmod(dir, 0700);
    T_EQ_INT(orch_ctl_check_dir(dir), 0);
    snprintf(path, sizeof path, "%s/file", tmp);
    fclose(fopen(path, "w"));
    T_EQ_INT(orch_ctl_check_dir(path), -ENOTDIR);
    /* ORCH_SOCKET_DIR: created 0700 when missing, refused when open */
    snprintf(path, sizeof path, "%s/made", tmp);
    setenv("ORCH_SOCKET_DIR", path, 1);
    T_EQ_INT(orch_ctl_socket_dir(got, sizeof got), 0);
    T_EQ_STR(got, path);
    {
        struct stat st;
        T_EQ_INT(stat(path, &st), 0);
        T_EQ_INT(st.st_mode & 0777, 0700);
    }
    chmod(path, 0711);
    T_EQ_INT(orch_ctl_socket_dir(got, sizeof got), -EACCES);
    chmod(path, 0700);
    unsetenv("ORCH_SOCKET_DIR");
}

/* ---------------------------------------------------------------- sockets */

typedef struct srv_state {
    orch_ctl_conn *conns[16];
    int nconn, frames, too_big, closed;
    char last[256];
} srv_state;

static srv_state S;

static void srv_frame(orch_ctl_conn *c, const char *data, size_t len,
                      int status, void *ud)
{
    (void)ud;
    if (status == ORCH_CTL_TOO_BIG) {
        S.too_big++;
        orch_ctl_write(c, "too big\n", 8);
        orch_ctl_close(c);
        return;
    }
    S.frames++;
    snprintf(S.last, sizeof S.last, "%.*s", (int)len, data);
    orch_ctl_write(c, "echo:", 5);
    orch_ctl_write(c, data, len);
    orch_ctl_write(c, "\n", 1);
}

static void srv_close(orch_ctl_conn *c, int status, void *ud)
{
    (void)status;
    (void)ud;
    S.closed++;
    orch_ctl_close(c);
}

static void srv_accept(orch_ctl_server *s, orch_ctl_conn *c, void *ud)
{
    orch_ctl_conn_cb cb = {srv_frame, srv_close};
    (void)s;
    (void)ud;
    if (S.nconn < 16)
        S.conns[S.nconn++] = c;
    orch_ctl_conn_start(c, &cb, 1024, NULL);
}

typedef struct cli_state {
    char got[4096];
    size_t len;
    int closed;
} cli_state;

static void cli_frame(orch_ctl_conn *c, const char *data, size_t len,
                      int status, void *ud)
{
    cli_state *cs = ud;
    (void)c;
    if (status)
        return;
    if (cs->len + len + 1 < sizeof cs->got) {
        memcpy(cs->got + cs->len, data, len);
        cs->len += len;
        cs->got[cs->len++] = '|';
        cs->got[cs->len] = '\0';
    }
}

static void cli_close(orch_ctl_conn *c, int status, void *ud)
{
    cli_state *cs = ud;
    (void)c;
    (void)status;
    cs->closed = 1;
}

static void spin(uv_loop_t *loop, int *flag, int want)
{
    for (int i = 0; i < 2000 && *flag < want; i++)
        uv_run(loop, UV_RUN_NOWAIT), usleep(1000);
}

static void test_sockets(void)
{
    uv_loop_t loop;
    orch_ctl_server *srv = NULL, *srv2 = NULL;
    orch_ctl_conn *c[5];
    cli_state cs[5];
    orch_ctl_conn_cb ccb = {cli_frame, cli_close};
    char dir[512], path[600];
    struct stat st;
    int fd;

    uv_loop_init(&loop);
    snprintf(dir, sizeof dir, "%s/run", tmp);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/r1.sock", dir);

    /* a stale socket file (bound, nobody listening) is replaced */
    {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        T_EQ_INT(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        close(fd);
    }
    T_EQ_INT(orch_ctl_connect(&loop, path, &c[0]), -ECONNREFUSED);
    T_EQ_INT(orch_ctl_listen(&loop, path, srv_accept, NULL, &srv), 0);
    T_EQ_INT(stat(path, &st), 0);
    T_EQ_INT(st.st_mode & 0777, 0600);
    /* a live one is never replaced */
    T_EQ_INT(orch_ctl_listen(&loop, path, srv_accept, NULL, &srv2), -EADDRINUSE);
    T_CHECK(srv2 == NULL);

    /* five clients at once */
    for (int i = 0; i < 5; i++) {
        char msg[32];
        memset(&cs[i], 0, sizeof cs[i]);
        T_EQ_INT(orch_ctl_connect(&loop, path, &c[i]), 0);
        orch_ctl_conn_start(c[i], &ccb, 0, &cs[i]);
        snprintf(msg, sizeof msg, "hello %d\nsec", i);
        orch_ctl_write(c[i], msg, strlen(msg));
        orch_ctl_write(c[i], "ond\n", 4);
    }
    spin(&loop, &S.frames, 10);
    T_EQ_INT(S.frames, 10);
    for (int i = 0; i < 5; i++) {
        char want[64];
        int done = 0;
        for (int k = 0; k < 500 && !done; k++) {
            uv_run(&loop, UV_RUN_NOWAIT);
            done = strstr(cs[i].got, "echo:second|") != NULL;
            if (!done)
                usleep(1000);
        }
        snprintf(want, sizeof want, "echo:hello %d|echo:second|", i);
        T_EQ_STR(cs[i].got, want);
    }
    /* an oversized frame (limit 1024 here): an error, then closed */
    {
        char big[3000];
        memset(big, 'z', sizeof big);
        orch_ctl_write(c[0], big, sizeof big);
        for (int k = 0; k < 2000 && !cs[0].closed; k++)
            uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
        T_EQ_INT(S.too_big, 1);
        T_CHECK(strstr(cs[0].got, "too big|") != NULL);
        T_CHECK(cs[0].closed);
    }
    /* the others still work */
    orch_ctl_write(c[1], "again\n", 6);
    spin(&loop, &S.frames, 11);
    T_EQ_STR(S.last, "again");
    /* clients go away: the server sees each close */
    for (int i = 0; i < 5; i++)
        orch_ctl_close(c[i]);
    spin(&loop, &S.closed, 5);
    /* 4 clients (conn 0 was closed by the server itself) and the probe of
     * the refused second listen */
    T_EQ_INT(S.closed, 5);
    orch_ctl_server_close(srv);
    T_CHECK(access(path, F_OK) != 0);
    T_EQ_INT(orch_ctl_connect(&loop, path, &c[0]), -ENOENT);
    uv_run(&loop, UV_RUN_DEFAULT);
    T_EQ_INT(uv_loop_close(&loop), 0);

    /* a path longer than sun_path is refused with a message */
    {
        char lp[300];
        memset(lp, 'a', sizeof lp);
        lp[0] = '/';
        lp[sizeof lp - 1] = '\0';
        uv_loop_init(&loop);
        T_EQ_INT(orch_ctl_listen(&loop, lp, srv_accept, NULL, &srv), -ENAMETOOLONG);
        uv_loop_close(&loop);
    }
}

int main(void)
{
    char cmd[300];
    snprintf(tmp, sizeof tmp, "/tmp/orch-test-ctl.XXXXXX");
    if (!mkdtemp(tmp))
        return 1;
    test_framer_splits();
    test_framer_too_big();
    test_linebuf_cut();
    test_dirs();
    test_sockets();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    T_DONE();
}
