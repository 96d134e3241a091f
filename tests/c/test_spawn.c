/* test_spawn.c - core/spawn.c: a cloned child gets its own session, the
 * signals asked back to SIG_DFL (handled ones too, ignored ones not asked
 * for stay ignored), nothing blocked, its stdio and directory; it runs the
 * copies made at the spawn even when the caller's strings change at once;
 * a step that fails is told with its errno after the child was reaped. */
#include "t.h"

#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void on_usr1(int sig)
{
    (void)sig;
}

/* Runs argv with stdout to a pipe (stdin /dev/null); returns what it
 * printed (malloc'd) and its wait status and the orch_spawn's failure. */
static char *run(const char *path, char **argv, const char *cwd, int *status,
                 int *failure, const char **step)
{
    orch_spawn_opts o;
    orch_spawn *s = NULL;
    pid_t pid;
    int fds[2];
    char *out = calloc(1, 65536);
    size_t len = 0;
    ssize_t n;
    int rc;

    memset(&o, 0, sizeof o);
    T_CHECK(pipe2(fds, O_CLOEXEC) == 0);
    o.path = path;
    o.argv = (const char *const *)argv;
    o.envp = (const char *const *)environ;
    o.cwd = cwd;
    o.fd_mode[0] = ORCH_SPAWN_DEVNULL;
    o.fd_mode[1] = ORCH_SPAWN_DUP;
    o.fd[1] = fds[1];
    o.fd_mode[2] = ORCH_SPAWN_KEEP;
    {
        static const int reset[] = {SIGTERM, SIGPIPE};
        o.reset = reset;
        o.nreset = 2;
    }
    rc = orch_spawn_start(&o, &s, &pid);
    T_EQ_INT(rc, 0);
    /* the caller's strings may go at once: the child has its copies */
    for (char **a = argv; *a; a++)
        memset(*a, 'Z', strlen(*a));
    close(fds[1]);
    while ((n = read(fds[0], out + len, 65535 - len)) > 0)
        len += (size_t)n;
    close(fds[0]);
    T_EQ_INT(waitpid(pid, status, 0), pid);
    *failure = s ? orch_spawn_failure(s, step) : -1;
    orch_spawn_free(s);
    return out;
}

static long field(const char *text, const char *name)
{
    const char *at = strstr(text, name);
    return at ? strtol(at + strlen(name), NULL, 16) : -1;
}

int main(void)
{
    char a0[] = "cat", a1[] = "/proc/self/status";
    char *argv[] = {a0, a1, NULL};
    char s0[] = "sh", s1[] = "-c", s2[] = "pwd; cat; echo eof";
    char *shv[] = {s0, s1, s2, NULL};
    char *out;
    int status, failure;
    const char *step;
    sigset_t block;

    /* orch's own dispositions: handled, ignored (asked back or not), blocked */
    signal(SIGUSR1, on_usr1);
    signal(SIGTERM, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    sigemptyset(&block);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, NULL);

    out = run("/bin/cat", argv, NULL, &status, &failure, &step);
    T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    T_EQ_INT(failure, 0);
    T_EQ_INT(field(out, "SigBlk:"), 0);
    /* SIGUSR2 (bit 11) stays ignored; SIGTERM (bit 14) is back to default */
    T_EQ_INT(field(out, "SigIgn:") & 0x7fffffff, 1L << (SIGUSR2 - 1));
    T_EQ_INT(field(out, "SigCgt:"), 0);
    {
        const char *pid = strstr(out, "\nPid:"), *sid = strstr(out, "\nNSsid:");
        T_CHECK(pid && sid);
        if (pid && sid)
            T_EQ_INT(strtol(pid + 5, NULL, 10), strtol(sid + 7, NULL, 10));
    }
    free(out);

    /* stdin /dev/null, the directory, argv as it was at the spawn */
    out = run("/bin/sh", shv, "/tmp", &status, &failure, &step);
    T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    T_EQ_STR(out, "/tmp\neof\n");
    free(out);

    /* a directory that is gone: told as the chdir step's ENOENT, exit 127 */
    {
        char c0[] = "true";
        char *tv[] = {c0, NULL};
        out = run("/bin/true", tv, "/no/such/dir", &status, &failure, &step);
        T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 127);
        T_EQ_INT(failure, ENOENT);
        T_EQ_STR(step, "chdir");
        free(out);
    }

    /* a file that is no program: the exec step's ENOEXEC */
    {
        char path[] = "/tmp/orch-test-spawn-XXXXXX";
        int fd = mkstemp(path);
        char c0[] = "x";
        char *tv[] = {c0, NULL};
        T_CHECK(fd >= 0);
        T_CHECK(write(fd, "echo hi\n", 8) == 8);
        close(fd);
        chmod(path, 0755);
        out = run(path, tv, NULL, &status, &failure, &step);
        T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 127);
        T_EQ_INT(failure, ENOEXEC);
        T_EQ_STR(step, "exec");
        T_EQ_STR(out, "");
        free(out);
        unlink(path);
    }
    T_DONE();
}
