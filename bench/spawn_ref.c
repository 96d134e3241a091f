/* spawn_ref.c - the reference for bench/spawn.lua: N runs of a program by a
 * plain fork/exec/waitpid loop. Prints the wall time in seconds. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    char *const args[] = {argc > 2 ? argv[2] : "true", NULL};
    struct timespec a, b;

    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        int st;
        pid_t pid = fork();
        if (pid == 0) {
            execvp(args[0], args);
            _exit(127);
        }
        if (pid < 0 || waitpid(pid, &st, 0) < 0)
            return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.6f\n", (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
