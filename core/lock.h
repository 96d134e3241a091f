/* lock.h - the file write-lock table.
 *
 * A lock set is a task's `files` list compiled against one table: each path
 * is normalised (leading "./" stripped, "//" collapsed, "." segments dropped,
 * "a/../" folded lexically) and interned. A path ending in "/" (or "." / "./")
 * is a directory entry: it locks that directory and everything under it, so
 * "src/" conflicts with "src/a.c" and with "src/x/", but not with "srcs/a".
 * "." or "./" is the whole tree. "a" and "a/" are different entries (a file
 * and a directory cannot share a name).
 *
 * orch_locks_try takes a whole set or nothing, so holders never wait while
 * holding: no deadlock is possible. Owners are small non-negative ints (the
 * scheduler's task indices). No I/O: paths are compared as strings only. */
#ifndef ORCH_LOCK_H
#define ORCH_LOCK_H

#include <stddef.h>

#include "strmap.h"

typedef struct orch_lock_node {
    int holder;  /* owner holding exactly this entry, or -1 */
    int held;    /* times this entry is held (by one owner) */
    int under;   /* held entries strictly below this directory */
    int is_dir;
    const char *path; /* the table's copy of the normalised path */
} orch_lock_node;

typedef struct orch_locks {
    orch_strmap paths;       /* normalised path -> node index */
    orch_lock_node *nodes;
    size_t n, cap;
} orch_locks;

/* One compiled entry: the node, and its ancestor directories (including the
 * root "" for relative paths) as indices into orch_lockset.anc. */
typedef struct orch_lock_entry {
    int node;
    int anc_off, anc_len;
} orch_lock_entry;

typedef struct orch_lockset {
    orch_lock_entry *ent;
    int n;
    int *anc;
    int nanc;
} orch_lockset;

void orch_locks_init(orch_locks *lt);
void orch_locks_free(orch_locks *lt);

/* Normalises `in` into out (at least strlen(in)+2 bytes). Returns the length
 * and sets *is_dir; -EINVAL for an empty path or one with a NUL byte. */
int orch_lock_normalise(const char *in, size_t len, char *out, int *is_dir);

/* Compiles paths[0..n) into *set (duplicates after normalisation are kept
 * once). 0 or -EINVAL / -ENOMEM. */
int orch_locks_compile(orch_locks *lt, const char *const *paths,
                       const size_t *lens, size_t n, orch_lockset *set);
void orch_lockset_free(orch_lockset *set);

/* Takes every entry of set for owner, or none. 0 on success; -EBUSY if one
 * entry conflicts, with *blocker = the owner holding it, or -1 when the
 * conflict is a held entry below one of set's directories (see
 * orch_locks_overlap to find who). */
int orch_locks_try(orch_locks *lt, const orch_lockset *set, int owner,
                   int *blocker);
void orch_locks_release(orch_locks *lt, const orch_lockset *set);

/* Whether two compiled sets conflict (some entry of one equals, contains or
 * is contained in an entry of the other). */
int orch_locks_overlap(const orch_locks *lt, const orch_lockset *a,
                       const orch_lockset *b);

/* The normalised path of a node (the table's own copy). */
const char *orch_locks_path(const orch_locks *lt, int node);

#endif
