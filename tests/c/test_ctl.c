/* test_ctl.c - the control socket's framer, directory checks, server and
 * client on a real loop and real unix sockets. */
#include "t.h"

#include "ctl.h"
#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* ---------------------------------------------------------------- framer */

typedef struct frames {
    char out[8192];
    size_t olen;
    int n, too_big;
    size_t big_len;
} frames;

static int collect(const char *data, size_t len, int status, void *ud)
{
    frames *f = ud;
    if (status == ORCH_CTL_TOO_BIG) {
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
        orch_ctl_framer fr;
        frames f = {0};
        orch_ctl_framer_init(&fr, 0);
        orch_ctl_framer_feed(&fr, in, cut, collect, &f);
        orch_ctl_framer_feed(&fr, in + cut, n - cut, collect, &f);
        orch_ctl_framer_finish(&fr, collect, &f);
        T_EQ_INT(f.n, 4);
        T_EQ_STR(f.out, "return 1|{\"id\":1,\"method\":\"status\"}||last|");
        orch_ctl_framer_free(&fr);
    }
}

static void test_framer_too_big(void)
{
    orch_ctl_framer fr;
    frames f = {0};
    char big[100];
    memset(big, 'x', sizeof big);
    orch_ctl_framer_init(&fr, 10);
    /* exactly the limit is fine */
    orch_ctl_framer_feed(&fr, "0123456789\n", 11, collect, &f);
    T_EQ_INT(f.n, 1);
    /* one over, in pieces with no newline: reported once, then skipped */
    orch_ctl_framer_feed(&fr, big, 6, collect, &f);
    orch_ctl_framer_feed(&fr, big, 6, collect, &f);
    T_EQ_INT(f.too_big, 1);
    orch_ctl_framer_feed(&fr, big, sizeof big, collect, &f);
    T_EQ_INT(f.too_big, 1);
    orch_ctl_framer_feed(&fr, "tail\nok\n", 8, collect, &f);
    T_EQ_INT(f.n, 2);
    T_EQ_STR(f.out, "0123456789|ok|");
    /* over the limit with its newline in the same chunk */
    orch_ctl_framer_feed(&fr, "01234567890\nnext\n", 17, collect, &f);
    T_EQ_INT(f.too_big, 2);
    T_EQ_INT(f.big_len, 11);
    T_EQ_INT(f.n, 3);
    T_CHECK(fr.cap <= 4096); /* never buffered the oversized frames */
    orch_ctl_framer_free(&fr);
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
    test_dirs();
    test_sockets();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", tmp);
    T_DONE();
}
