/* Shared by unit tests: where the shared slides are, and an explicit skip
 * (with the reason) when they are absent. Include after <cmocka.h>. */
#ifndef CS_TEST_TESTDATA_H
#define CS_TEST_TESTDATA_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char cmu[1024];

/* Path of the CMU-1-Small-Region slide, from CS_TESTDATA. */
static int have_cmu(void)
{
    const char *td = getenv("CS_TESTDATA");
    snprintf(cmu, sizeof(cmu), "%s/wsi/CMU-1-Small-Region.svs", td ? td : "../shared/testdata");
    return access(cmu, R_OK) == 0;
}

#define NEED_CMU()                                                                                 \
    do {                                                                                           \
        if (!have_cmu()) {                                                                         \
            print_message("skipped: %s not found (set CS_TESTDATA)\n", cmu);                       \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

#endif
