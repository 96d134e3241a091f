/* spawn.c - a child cloned on a stack of its own, set up with raw system
 * calls, exec'd while orch goes on (spawn.h). */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#define ORCH_SPAWN_RAW 1
#else
#define ORCH_SPAWN_RAW 0
#endif

/* The child's frames are small (no libc, a few locals); a signal handler
 * never runs on this stack (every signal is blocked until the handlers are
 * back to their defaults). */
#define ORCH_SPAWN_STACK ((size_t)32 * 1024)
#define ORCH_SPAWN_NSIG 64

enum orch_spawn_step {
    ORCH_SPAWN_OK = 0,
    ORCH_SPAWN_SETSID,
    ORCH_SPAWN_SIGNALS,
    ORCH_SPAWN_STDIN,
    ORCH_SPAWN_STDOUT,
    ORCH_SPAWN_STDERR,
    ORCH_SPAWN_CHDIR,
    ORCH_SPAWN_EXEC
};

static const char *const orch_spawn_steps[] = {
    "", "setsid", "signals", "stdin", "stdout", "stderr", "chdir", "exec",
};

struct orch_spawn {
    int err;  /* written by the child when a step fails */
    int step;
    const char *path;
    char *const *argv;
    char *const *envp;
    const char *cwd;
    int fd_mode[3];
    int fd[3];
    uint64_t reset; /* bit sig-1: set back to SIG_DFL whatever it was */
    _Alignas(16) char mem[]; /* the stack, then argv, envp and the strings */
};

#if ORCH_SPAWN_RAW

/* The child runs no sanitizer code: it shares orch's memory, shadow memory
 * included, and makes no call into libc or the sanitizers' runtime. */
#define ORCH_SPAWN_CHILD __attribute__((no_sanitize("address", "undefined"), noinline))

static ORCH_SPAWN_CHILD long orch_spawn_sys(long n, long a, long b, long c, long d)
{
#if defined(__x86_64__)
    register long r10 __asm__("r10") = d;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return ret;
#else
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
#endif
}

/* The kernel's struct sigaction on x86_64 and aarch64 (both have
 * sa_restorer), with a 64-signal mask. */
typedef struct orch_spawn_ksa {
    unsigned long handler, flags, restorer, mask;
} orch_spawn_ksa;

/* Handlers are orch's code: none may run in the child, and none survives
 * the exec anyway; the listed signals go back to SIG_DFL even if ignored. */
static ORCH_SPAWN_CHILD int orch_spawn_child_signals(const orch_spawn *s)
{
    orch_spawn_ksa sa, old;
    unsigned long none = 0;

    sa.handler = 0; /* SIG_DFL */
    sa.flags = 0;
    sa.restorer = 0;
    sa.mask = 0;
    for (int sig = 1; sig <= ORCH_SPAWN_NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (!((s->reset >> (sig - 1)) & 1)) {
            if (orch_spawn_sys(SYS_rt_sigaction, sig, 0, (long)&old, 8) < 0)
                continue;
            if (old.handler == 0 || old.handler == 1) /* SIG_DFL, SIG_IGN */
                continue;
        }
        orch_spawn_sys(SYS_rt_sigaction, sig, (long)&sa, 0, 8);
    }
    return (int)orch_spawn_sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, 8);
}

/* Descriptor i as asked. Every descriptor orch opens is close-on-exec, the
 * /dev/null opened here too: a copy made with dup3 is not, and a descriptor
 * already at its place loses the flag. */
static ORCH_SPAWN_CHILD long orch_spawn_child_fd(const orch_spawn *s, int i)
{
    long fd;
    if (s->fd_mode[i] == ORCH_SPAWN_DEVNULL) {
        fd = orch_spawn_sys(SYS_openat, AT_FDCWD, (long)"/dev/null",
                            (i == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC, 0);
        if (fd < 0)
            return fd;
    } else if (s->fd_mode[i] == ORCH_SPAWN_DUP) {
        fd = s->fd[i];
    } else {
        return 0;
    }
    if (fd == i)
        return orch_spawn_sys(SYS_fcntl, i, F_SETFD, 0, 0);
    return orch_spawn_sys(SYS_dup3, fd, i, 0, 0);
}

static ORCH_SPAWN_CHILD int orch_spawn_child(void *arg)
{
    orch_spawn *s = arg;
    int step = ORCH_SPAWN_SETSID;
    long rc = orch_spawn_sys(SYS_setsid, 0, 0, 0, 0);

    if (rc < 0)
        goto fail;
    step = ORCH_SPAWN_SIGNALS;
    if ((rc = orch_spawn_child_signals(s)) < 0)
        goto fail;
    for (int i = 0; i < 3; i++) {
        step = ORCH_SPAWN_STDIN + i;
        if ((rc = orch_spawn_child_fd(s, i)) < 0)
            goto fail;
    }
    step = ORCH_SPAWN_CHDIR;
    if (s->cwd && (rc = orch_spawn_sys(SYS_chdir, (long)s->cwd, 0, 0, 0)) < 0)
        goto fail;
    step = ORCH_SPAWN_EXEC;
    rc = orch_spawn_sys(SYS_execve, (long)s->path, (long)s->argv, (long)s->envp, 0);
fail:
    s->err = (int)-rc;
    s->step = step;
    for (;;)
        orch_spawn_sys(SYS_exit_group, 127, 0, 0, 0);
    return 0;
}

#endif

static size_t orch_spawn_count(const char *const *v, size_t *bytes)
{
    size_t n = 0;
    for (; v && v[n]; n++)
        *bytes += strlen(v[n]) + 1;
    return n;
}

static char *orch_spawn_copy(char *at, const char *str, const char **to)
{
    size_t len = strlen(str) + 1;
    memcpy(at, str, len);
    *to = at;
    return at + len;
}

/* argv and envp into the arrays at vec, their strings at str. */
static char *orch_spawn_copy_vec(char *str, const char *const *src, size_t n,
                                 const char **vec)
{
    for (size_t i = 0; i < n; i++)
        str = orch_spawn_copy(str, src[i], &vec[i]);
    vec[n] = NULL;
    return str;
}

int orch_spawn_start(const orch_spawn_opts *o, orch_spawn **out, pid_t *pid)
{
#if !ORCH_SPAWN_RAW
    (void)o;
    *out = NULL;
    *pid = -1;
    return -ENOSYS;
#else
    size_t bytes = strlen(o->path) + 1 + (o->cwd ? strlen(o->cwd) + 1 : 0);
    size_t nargv = orch_spawn_count(o->argv, &bytes);
    size_t nenv = orch_spawn_count(o->envp, &bytes);
    size_t vecs = (nargv + 1 + nenv + 1) * sizeof(char *);
    orch_spawn *s;
    const char **argv, **envp, *cstr = NULL;
    char *str;
    sigset_t all, old;
    int rc, err;

    *out = NULL;
    *pid = -1;
    s = malloc(sizeof *s + ORCH_SPAWN_STACK + vecs + bytes);
    if (!s)
        return -ENOMEM;
    memset(s, 0, sizeof *s);
    argv = (const char **)(void *)(s->mem + ORCH_SPAWN_STACK);
    envp = argv + nargv + 1;
    str = (char *)(envp + nenv + 1);
    str = orch_spawn_copy_vec(str, o->argv, nargv, argv);
    str = orch_spawn_copy_vec(str, o->envp, nenv, envp);
    str = orch_spawn_copy(str, o->path, &s->path);
    if (o->cwd)
        orch_spawn_copy(str, o->cwd, &cstr);
    s->argv = (char *const *)argv;
    s->envp = (char *const *)envp;
    s->cwd = cstr;
    for (int i = 0; i < 3; i++) {
        s->fd_mode[i] = o->fd_mode[i];
        s->fd[i] = o->fd[i];
    }
    for (size_t i = 0; i < o->nreset; i++)
        if (o->reset[i] >= 1 && o->reset[i] <= ORCH_SPAWN_NSIG)
            s->reset |= (uint64_t)1 << (o->reset[i] - 1);

    /* Blocked in the child from its first instruction: a handler of orch's
     * must not run there before the child set them all to SIG_DFL. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = clone(orch_spawn_child, s->mem + ORCH_SPAWN_STACK, CLONE_VM | SIGCHLD, s);
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0) {
        free(s);
        return -err;
    }
    *pid = rc;
    *out = s;
    return 0;
#endif
}

int orch_spawn_failure(const orch_spawn *s, const char **step)
{
    *step = orch_spawn_steps[s->step < 0 || s->step > ORCH_SPAWN_EXEC ? 0 : s->step];
    return s->err;
}

const char *orch_spawn_path(const orch_spawn *s)
{
    return s->path;
}

void orch_spawn_free(orch_spawn *s)
{
    free(s);
}
