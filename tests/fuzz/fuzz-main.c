/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replay driver for builds without libFuzzer: every argument is a file or a
 * directory (not descended into recursively); each regular file is read and
 * given to LLVMFuzzerTestOneInput() once, in an allocation of exactly its
 * size so AddressSanitizer sees any read past the end. Exits non-zero if an
 * argument cannot be read; a crash in the target is the test failure.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* Runs the target on one file; < 0 (errno) if it cannot be read. */
static int run_file(const char *path) {
        struct stat st;
        uint8_t *buf;
        size_t done = 0;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return -EINVAL;
        }
        /* malloc(0) may return NULL; keep one byte so an empty input is still a real pointer. */
        buf = malloc((size_t) st.st_size ? (size_t) st.st_size : 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        while (done < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + done, (size_t) st.st_size - done);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                done += (size_t) n;
        }
        close(fd);
        fprintf(stderr, "running %s (%zu bytes)\n", path, done);
        (void) LLVMFuzzerTestOneInput(buf, done);
        free(buf);
        return 0;
}

int main(int argc, char *argv[]) {
        unsigned n = 0, n_bad = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        n_bad++;
                        continue;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (run_file(argv[i]) < 0)
                                n_bad++;
                        else
                                n++;
                        continue;
                }

                struct dirent **entries = NULL;
                int k = scandir(argv[i], &entries, NULL, alphasort);
                if (k < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        n_bad++;
                        continue;
                }
                for (int j = 0; j < k; j++) {
                        char *p = NULL;
                        struct stat est;
                        if (entries[j]->d_name[0] != '.' &&
                            asprintf(&p, "%s/%s", argv[i], entries[j]->d_name) >= 0 && stat(p, &est) >= 0 &&
                            S_ISREG(est.st_mode)) {
                                if (run_file(p) < 0)
                                        n_bad++;
                                else
                                        n++;
                        }
                        free(p);
                        free(entries[j]);
                }
                free(entries);
        }
        printf("%u inputs ran, %u could not be read\n", n, n_bad);
        return n_bad > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
