/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tests for the optional-library loader (util/dlfcn-util.c) and the engine
 * wrapper that names the package to install (drivers/dl-engine.c), against
 * the real dynamic loader: a soname no system has, a symbol libc lacks, and
 * libc itself. The engines' own tables (libpq, hiredis, libmosquitto) are
 * exercised by the driver tests, which can only pass once they resolved.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/dl-engine.h"
#include "util/cleanup.h"
#include "util/dlfcn-util.h"
#include "tests.h"

#define NO_SUCH_SONAME "libmooring-test-no-such-library.so.0"

/* Pointers typed like the real functions, as the engine headers declare theirs. */
static DLSYM_PROTOTYPE(getpid) = NULL;
static DLSYM_PROTOTYPE(strlen) = NULL;
/* Stands in for a symbol an older build of a library lacks: never defined anywhere. */
static int (*sym_mooring_test_no_such_symbol)(void) = NULL;

static bool starts_with(const char *s, const char *prefix) {
        return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

TEST(missing_library) {
        const DlSym syms[] = { DLSYM(getpid) };
        _cleanup_free_ char *msg = NULL;
        void *dl = NULL;

        ASSERT_ERROR(dlopen_syms(&dl, NO_SUCH_SONAME, syms, ELEMENTSOF(syms), &msg), EOPNOTSUPP);
        ASSERT_NULL(dl);
        ASSERT_NULL(sym_getpid);
        /* what the loader said comes through: which file, and why */
        ASSERT_TRUE(starts_with(msg, "dlopen " NO_SUCH_SONAME ": "));
        ASSERT_TRUE(strstr(msg, "No such file") != NULL);

        /* reterr_msg is optional */
        ASSERT_ERROR(dlopen_syms(&dl, NO_SUCH_SONAME, syms, ELEMENTSOF(syms), NULL), EOPNOTSUPP);
}

TEST(missing_symbol_resolves_nothing) {
        const DlSym syms[] = { DLSYM(getpid), DLSYM(mooring_test_no_such_symbol), DLSYM(strlen) };
        _cleanup_free_ char *msg = NULL;
        void *dl = NULL;

        ASSERT_ERROR(dlopen_syms(&dl, "libc.so.6", syms, ELEMENTSOF(syms), &msg), EOPNOTSUPP);
        ASSERT_TRUE(starts_with(msg, "libc.so.6 lacks 'mooring_test_no_such_symbol'"));
        /* all or nothing: getpid, resolved before the failure, is cleared again */
        ASSERT_NULL(dl);
        ASSERT_NULL(sym_getpid);
        ASSERT_NULL(sym_strlen);
}

TEST(resolves_every_symbol_once) {
        const DlSym syms[] = { DLSYM(getpid), DLSYM(strlen) };
        void *dl = NULL, *first;

        ASSERT_OK(dlopen_syms(&dl, "libc.so.6", syms, ELEMENTSOF(syms), NULL));
        ASSERT_NOT_NULL(dl);
        ASSERT_EQ(sym_getpid(), getpid());
        ASSERT_EQ(sym_strlen("mooring"), 7);

        /* loaded stays loaded: a second call changes nothing */
        first = dl;
        sym_getpid = NULL;
        ASSERT_OK(dlopen_syms(&dl, "libc.so.6", syms, ELEMENTSOF(syms), NULL));
        ASSERT_TRUE(dl == first);
        ASSERT_NULL(sym_getpid);
}

TEST(engine_names_the_package_and_retries) {
        static const DlSym syms[] = { DLSYM(getpid) };
        DlEngine e = { .soname = NO_SUCH_SONAME, .package = "mooring-test-pkg", .syms = syms, .n_syms = 1 };
        _cleanup_free_ char *msg = NULL;

        sym_getpid = NULL;
        ASSERT_ERROR(dl_engine_load(&e, "state.test", &msg), EOPNOTSUPP);
        ASSERT_TRUE(starts_with(msg, "state.test needs mooring-test-pkg: apt install mooring-test-pkg "
                                     "(dlopen " NO_SUCH_SONAME ": "));
        ASSERT_TRUE(msg[strlen(msg) - 1] == ')');
        ASSERT_NULL(e.dl);

        /* the failure is not remembered: once the library is there, the next open succeeds */
        e.soname = "libc.so.6";
        ASSERT_OK(dl_engine_load(&e, "state.test", NULL));
        ASSERT_NOT_NULL(e.dl);
        ASSERT_EQ(sym_getpid(), getpid());
}
