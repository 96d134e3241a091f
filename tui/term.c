/* term.c - the terminal's file descriptors around the TUI: while it draws,
 * stderr (and stdout, when it is the terminal) go to a log file, so that
 * nothing written by the run garbles the screen; after a detach, the
 * process leaves the terminal for good. */
#include "tui.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int tui_open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return orch_err_set(-errno, "cannot open %s: %s", path, strerror(errno));
    return fd;
}

int tui_term_redirect(const char *path, tui_saved_fds *saved)
{
    int fd, rc = 0;

    saved->fd[0] = saved->fd[1] = saved->fd[2] = -1;
    fd = tui_open_log(path);
    if (fd < 0)
        return fd;
    fflush(stdout);
    fflush(stderr);
    for (int i = 1; i <= 2; i++) {
        if (i == 1 && !isatty(1))
            continue;
        saved->fd[i] = fcntl(i, F_DUPFD_CLOEXEC, 3);
        if (saved->fd[i] < 0 || dup2(fd, i) < 0) {
            rc = orch_err_set(-errno, "cannot redirect fd %d: %s", i, strerror(errno));
            goto cleanup;
        }
    }
cleanup:
    close(fd);
    if (rc < 0)
        tui_term_restore(saved);
    return rc;
}

void tui_term_restore(tui_saved_fds *saved)
{
    fflush(stdout);
    fflush(stderr);
    for (int i = 0; i < 3; i++) {
        if (saved->fd[i] < 0)
            continue;
        dup2(saved->fd[i], i);
        close(saved->fd[i]);
        saved->fd[i] = -1;
    }
}

int tui_term_detach(const char *path)
{
    int fd, null, rc = 0;

    fd = tui_open_log(path);
    if (fd < 0)
        return fd;
    null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0) {
        rc = orch_err_set(-errno, "cannot open /dev/null: %s", strerror(errno));
        goto cleanup;
    }
    fflush(stdout);
    fflush(stderr);
    if (dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
        rc = orch_err_set(-errno, "cannot leave the terminal: %s", strerror(errno));
        goto cleanup;
    }
    signal(SIGHUP, SIG_IGN);
    signal(SIGTTOU, SIG_IGN);
    signal(SIGTTIN, SIG_IGN);
cleanup:
    if (null >= 0)
        close(null);
    close(fd);
    return rc;
}

int tui_term_foreground_leader(int fd)
{
    pid_t fg = tcgetpgrp(fd);
    return fg > 0 && fg == getpgrp() && getpgrp() == getpid();
}
