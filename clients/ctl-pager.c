/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mooringctl: piping table output into a pager.
 *
 * Only when stdout is a terminal and --no-pager was not given. The pager is
 * $MOORING_PAGER, else $PAGER (run by /bin/sh), else less, else more; an
 * empty value or "cat" means no pager. With LESS unset, less gets "FRSXMK":
 * it exits at once when the output fits on one screen. Any failure to start
 * a pager just leaves output going straight to the terminal.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"

static pid_t pager_pid;

static const char *pager_command(void) {
        const char *p = getenv("MOORING_PAGER");

        if (!p)
                p = getenv("PAGER");
        return p;
}

/* In the child: become the pager, or at least copy stdin to stdout. */
_Noreturn static void run_pager(const char *command) {
        char buf[4096];
        ssize_t n;

        (void) setenv("LESS", "FRSXMK", 0);
        if (command) {
                execl("/bin/sh", "sh", "-c", command, (char *) NULL);
        } else {
                execlp("less", "less", (char *) NULL);
                execlp("more", "more", (char *) NULL);
        }
        while ((n = read(STDIN_FILENO, buf, sizeof(buf))) > 0)
                if (write(STDOUT_FILENO, buf, (size_t) n) != n)
                        break;
        _exit(EXIT_SUCCESS);
}

/* Start the pager and point stdout at it, if the conditions above hold. */
void ctl_pager_open(bool no_pager) {
        const char *command = pager_command();
        int fds[2];
        pid_t pid;

        if (no_pager || pager_pid > 0 || !isatty(STDOUT_FILENO))
                return;
        if (command && (command[0] == '\0' || streq(command, "cat")))
                return;

        fflush(stdout);
        if (pipe(fds) < 0)
                return;
        pid = fork();
        if (pid < 0) {
                (void) close(fds[0]);
                (void) close(fds[1]);
                return;
        }
        if (pid == 0) {
                if (dup2(fds[0], STDIN_FILENO) < 0)
                        _exit(EXIT_FAILURE);
                (void) close(fds[0]);
                (void) close(fds[1]);
                run_pager(command);
        }

        if (dup2(fds[1], STDOUT_FILENO) < 0) {
                /* cannot redirect: let the pager see EOF and carry on unpaged */
                (void) close(fds[0]);
                (void) close(fds[1]);
                (void) waitpid(pid, NULL, 0);
                return;
        }
        (void) close(fds[0]);
        (void) close(fds[1]);
        pager_pid = pid;
        /* a pager quit early makes our writes fail; that is not worth a signal death */
        (void) signal(SIGPIPE, SIG_IGN);
}

/* Flush, close our end so the pager sees EOF, and wait for the user to leave it. */
void ctl_pager_close(void) {
        if (pager_pid <= 0)
                return;
        fflush(stdout);
        (void) close(STDOUT_FILENO);
        while (waitpid(pager_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        pager_pid = 0;
}
