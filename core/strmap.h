/* strmap.h - a string -> int hash map that owns copies of its keys.
 *
 * Open addressing with linear probing, FNV-1a hashing, grows at 50% load.
 * Used to intern task ids (sched.c) and lock paths (lock.c). Keys are never
 * removed. */
#ifndef ORCH_STRMAP_H
#define ORCH_STRMAP_H

#include <stddef.h>

typedef struct orch_strmap {
    char **keys;   /* NULL = empty slot */
    int *vals;
    size_t cap;    /* power of two (0 before the first insert) */
    size_t len;
} orch_strmap;

void orch_strmap_init(orch_strmap *m);
void orch_strmap_free(orch_strmap *m);

/* Value for key (len bytes, need not be NUL-terminated), or -1. */
int orch_strmap_get(const orch_strmap *m, const char *key, size_t len);

/* Inserts key -> val unless present. Returns 1 if inserted, 0 if it was
 * already there (then *old, if not NULL, gets its value), -ENOMEM.
 * *stored, if not NULL, gets the map's own copy of the key. */
int orch_strmap_put(orch_strmap *m, const char *key, size_t len, int val,
                    int *old, const char **stored);

#endif
