/* t.h - a tiny test harness for the core's C unit tests (TAP output). */
#ifndef ORCH_T_H
#define ORCH_T_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_failures;
static int t_count;

#define T_CHECK(cond)                                                         \
    do {                                                                      \
        t_count++;                                                            \
        if (!(cond)) {                                                        \
            t_failures++;                                                     \
            printf("not ok %d - %s:%d: %s\n", t_count, __FILE__, __LINE__,    \
                   #cond);                                                    \
        }                                                                     \
    } while (0)

#define T_EQ_INT(a, b)                                                        \
    do {                                                                      \
        long long t_a_ = (long long)(a), t_b_ = (long long)(b);               \
        t_count++;                                                            \
        if (t_a_ != t_b_) {                                                   \
            t_failures++;                                                     \
            printf("not ok %d - %s:%d: %s == %s (%lld != %lld)\n", t_count,   \
                   __FILE__, __LINE__, #a, #b, t_a_, t_b_);                   \
        }                                                                     \
    } while (0)

#define T_EQ_STR(a, b)                                                        \
    do {                                                                      \
        const char *t_a_ = (a), *t_b_ = (b);                                  \
        t_count++;                                                            \
        if (!t_a_ || !t_b_ || strcmp(t_a_, t_b_) != 0) {                      \
            t_failures++;                                                     \
            printf("not ok %d - %s:%d: %s == %s (\"%s\" != \"%s\")\n",        \
                   t_count, __FILE__, __LINE__, #a, #b,                       \
                   t_a_ ? t_a_ : "(null)", t_b_ ? t_b_ : "(null)");           \
        }                                                                     \
    } while (0)

#define T_DONE()                                                              \
    do {                                                                      \
        printf("1..%d\n", t_count);                                           \
        return t_failures ? 1 : 0;                                            \
    } while (0)

#endif
