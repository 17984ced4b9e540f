/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A tiny unit-test harness, included once by each tests/unit/test-*.c.
 *
 * TEST(name) { ... } defines a test; a constructor registers it, so a test
 * file needs no list of its own. The ASSERT_* macros print both sides and
 * file:line, then abandon the current test (longjmp back to the runner) and
 * the runner goes on with the next one. Memory a failed test still held is
 * leaked, so when any test failed main() exits with _exit() and
 * LeakSanitizer does not pile its report on top; a fully green run still
 * gets the leak check.
 *
 * main() runs every test, or only those named in TESTFUNCS=a:b, prints
 * "ok name" or "FAIL name" per test, and exits 1 if any failed.
 */
#pragma once

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TESTS_MAX 512

typedef struct TestCase {
        const char *name;
        void (*func)(void);
} TestCase;

static TestCase test_cases[TESTS_MAX];
static size_t test_cases_n;
static jmp_buf test_jmp;
static bool test_failed;

static void test_register(const char *name, void (*func)(void)) {
        if (test_cases_n >= TESTS_MAX) {
                fprintf(stderr, "tests.h: too many tests, raise TESTS_MAX\n");
                abort();
        }
        test_cases[test_cases_n++] = (TestCase){ .name = name, .func = func };
}

#define TEST(name)                                                               \
        static void test_##name(void);                                           \
        __attribute__((constructor)) static void test_register_##name(void) {    \
                test_register(#name, test_##name);                               \
        }                                                                        \
        static void test_##name(void)

/* Marks the running test failed and leaves it. Not for use outside a test. */
__attribute__((noreturn)) static void test_fail(void) {
        test_failed = true;
        fflush(stderr);
        longjmp(test_jmp, 1);
}

#define ASSERT_TRUE(expr)                                                                        \
        do {                                                                                     \
                if (!(expr)) {                                                                   \
                        fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #expr); \
                        test_fail();                                                             \
                }                                                                                \
        } while (0)

/* Integers of any type; both sides are widened to intmax_t for comparison and printing. */
#define ASSERT_EQ(a, b)                                                                          \
        do {                                                                                     \
                intmax_t _a = (intmax_t) (a), _b = (intmax_t) (b);                               \
                if (_a != _b) {                                                                  \
                        fprintf(stderr, "%s:%d: %s == %s failed: %jd (%#jx) != %jd (%#jx)\n",    \
                                __FILE__, __LINE__, #a, #b, _a, (uintmax_t) _a, _b, (uintmax_t) _b); \
                        test_fail();                                                             \
                }                                                                                \
        } while (0)

#define ASSERT_STREQ(a, b)                                                                       \
        do {                                                                                     \
                const char *_a = (a), *_b = (b);                                                 \
                if (!_a || !_b || strcmp(_a, _b) != 0) {                                         \
                        fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__,   \
                                __LINE__, #a, #b, _a ?: "(null)", _b ?: "(null)");               \
                        test_fail();                                                             \
                }                                                                                \
        } while (0)

#define ASSERT_NULL(p)                                                                           \
        do {                                                                                     \
                const void *_p = (p);                                                            \
                if (_p) {                                                                        \
                        fprintf(stderr, "%s:%d: %s is %p, expected NULL\n", __FILE__, __LINE__, #p, \
                                _p);                                                             \
                        test_fail();                                                             \
                }                                                                                \
        } while (0)

#define ASSERT_NOT_NULL(p)                                                                       \
        do {                                                                                     \
                if (!(p)) {                                                                      \
                        fprintf(stderr, "%s:%d: %s is NULL\n", __FILE__, __LINE__, #p);           \
                        test_fail();                                                             \
                }                                                                                \
        } while (0)

/* r >= 0, the daemon's convention for success. */
#define ASSERT_OK(r)                                                                             \
        do {                                                                                     \
                intmax_t _r = (intmax_t) (r);                                                    \
                if (_r < 0) {                                                                    \
                        fprintf(stderr, "%s:%d: %s failed: %jd (%s)\n", __FILE__, __LINE__, #r, _r, \
                                _r >= -4095 ? strerror((int) -_r) : "?");                        \
                        test_fail();                                                             \
                }                                                                                \
        } while (0)

/* r == -e, e given as a positive errno value such as EINVAL. */
#define ASSERT_ERROR(r, e)                                                                       \
        do {                                                                                     \
                intmax_t _r = (intmax_t) (r);                                                    \
                int _e = (e);                                                                    \
                if (_r != -(intmax_t) _e) {                                                      \
                        fprintf(stderr, "%s:%d: %s: expected -%s (%d), got %jd%s%s%s\n", __FILE__,  \
                                __LINE__, #r, #e, -_e, _r, _r < 0 ? " (" : "",                   \
                                _r < 0 && _r >= -4095 ? strerror((int) -_r) : "",                \
                                _r < 0 ? ")" : "");                                              \
                        test_fail();                                                             \
                }                                                                                \
        } while (0)

/* Is name listed in the colon-separated filter? */
static bool test_selected(const char *filter, const char *name) {
        size_t n = strlen(name);
        for (const char *p = filter; *p;) {
                const char *e = strchrnul(p, ':');
                if ((size_t) (e - p) == n && strncmp(p, name, n) == 0)
                        return true;
                p = *e ? e + 1 : e;
        }
        return false;
}

/* Kept separate so nothing live in the caller's frame is touched by longjmp. */
static bool test_run_one(const TestCase *t) {
        test_failed = false;
        if (setjmp(test_jmp) == 0)
                t->func();
        fflush(stdout);
        return !test_failed;
}

int main(void) {
        const char *filter = getenv("TESTFUNCS");
        unsigned n_run = 0, n_failed = 0;

        if (filter && !*filter)
                filter = NULL; /* TESTFUNCS= (empty) means all */
        /* Every name in the filter must exist: a typo must not pass silently. */
        for (const char *p = filter; p && *p;) {
                const char *e = strchrnul(p, ':');
                bool found = false;
                for (size_t i = 0; i < test_cases_n && !found; i++)
                        found = strlen(test_cases[i].name) == (size_t) (e - p) &&
                                strncmp(test_cases[i].name, p, (size_t) (e - p)) == 0;
                if (!found && e > p) {
                        fprintf(stderr, "TESTFUNCS names unknown test '%.*s'\n", (int) (e - p), p);
                        return EXIT_FAILURE;
                }
                p = *e ? e + 1 : e;
        }

        for (size_t i = 0; i < test_cases_n; i++) {
                if (filter && !test_selected(filter, test_cases[i].name))
                        continue;
                n_run++;
                if (test_run_one(&test_cases[i]))
                        printf("ok %s\n", test_cases[i].name);
                else {
                        printf("FAIL %s\n", test_cases[i].name);
                        n_failed++;
                }
                fflush(stdout);
        }
        printf("%u tests, %u failed\n", n_run, n_failed);
        fflush(stdout);
        /* A failed test abandons what it allocated; skip LeakSanitizer's report of that noise. */
        if (n_failed > 0)
                _exit(EXIT_FAILURE);
        return EXIT_SUCCESS;
}
