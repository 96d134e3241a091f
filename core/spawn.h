/* spawn.h - starting a child process without waiting for its exec.
 *
 * posix_spawn (vfork) suspends the calling thread until the child has
 * exec'd: on a busy machine the child waits for a CPU first, and orch's loop
 * waited with it (390 us a spawn on average in bench/dag.sh, 3.9 s of a
 * 5.7 s run of 10,000 tasks). orch_spawn_start clones a child that shares
 * orch's memory only until its exec, on a stack of its own, and returns as
 * soon as the kernel has made it: the pid is known at once, the loop goes on
 * while the child sets itself up and execs.
 *
 * The child touches nothing but its orch_spawn (its stack, and copies of the
 * path, argv, environment and working directory made before the clone) and
 * makes raw system calls only (no libc: it shares the calling thread's
 * errno and TLS while that thread runs on). It sets up what proc.c asked of
 * posix_spawn: a session of its own, every handled or listed signal back to
 * its default, an empty mask, stdin/stdout/stderr, the working directory.
 * A step that fails is written into the orch_spawn and the child exits 127;
 * orch_spawn_failure() tells it once the child has exited.
 *
 * Available on Linux x86_64 and aarch64; elsewhere orch_spawn_start returns
 * -ENOSYS and the caller uses posix_spawn. */
#ifndef ORCH_SPAWN_H
#define ORCH_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

typedef struct orch_spawn orch_spawn;

enum orch_spawn_fd {
    ORCH_SPAWN_KEEP = 0, /* the descriptor as orch has it */
    ORCH_SPAWN_DEVNULL,  /* /dev/null */
    ORCH_SPAWN_DUP       /* a copy of fd[i] */
};

typedef struct orch_spawn_opts {
    const char *path;          /* absolute */
    const char *const *argv;
    const char *const *envp;
    const char *cwd;           /* NULL: orch's */
    enum orch_spawn_fd fd_mode[3];
    int fd[3];                 /* ORCH_SPAWN_DUP: what 0, 1, 2 become */
    const int *reset;          /* signals set back to SIG_DFL */
    size_t nreset;
} orch_spawn_opts;

/* 0 and the child's pid, and *out to free with orch_spawn_free once it has
 * been reaped; or -errno (nothing to free, no child). */
int orch_spawn_start(const orch_spawn_opts *o, orch_spawn **out, pid_t *pid);
/* After the child was reaped: 0 if it exec'd, else the errno of the step
 * that failed and that step's name in *step ("exec", "chdir"...). */
int orch_spawn_failure(const orch_spawn *s, const char **step);
/* The program it runs (or failed to). */
const char *orch_spawn_path(const orch_spawn *s);
void orch_spawn_free(orch_spawn *s);

#endif
