/* lhandle.h - what every handle binding shares (luv's lhandle.c is the
 * model): timers, signal watchers, file watchers, the stdin reader.
 *
 * The userdata holds a pointer to a C object allocated apart from it (so a
 * collected userdata can close the object asynchronously) whose first
 * member is a lorch_handle. While active, the object keeps the userdata
 * alive through a self reference; its callbacks are registry references in
 * numbered slots. Closing is idempotent (the close method and __gc share
 * it): the references are released, the binding's close function stops and
 * frees the C side, and the userdata is left empty (a later use raises
 * "<what> is closed").
 *
 *   typedef struct ltimer { lorch_handle base; uv_timer_t t; } ltimer;
 *   static void ltimer_close(lorch_handle *h) { ... lorch_handle_uv_close(h, (uv_handle_t *)&t->t); }
 *   ltimer *t = lorch_handle_new(L, "orch.timer", sizeof *t, ltimer_close);
 */
#ifndef ORCH_LHANDLE_H
#define ORCH_LHANDLE_H

#include "lorch.h"

#define LORCH_HANDLE_REFS 3

typedef struct lorch_handle lorch_handle;
struct lorch_handle {
    int self_ref;
    int refs[LORCH_HANDLE_REFS];
    void (*close)(lorch_handle *h); /* stops and frees the C side */
};

/* Allocates a zeroed object of size bytes (its first member a
 * lorch_handle, every reference empty) and pushes a userdata with the
 * metatable mt that points at it. Raises on out of memory. */
void *lorch_handle_new(lua_State *L, const char *mt, size_t size,
                       void (*close)(lorch_handle *h));

/* The object of the handle at idx, or NULL when it is closed. */
void *lorch_handle_get(lua_State *L, int idx, const char *mt);

/* The object of the handle at idx; raises "<what> is closed" when closed. */
void *lorch_handle_check(lua_State *L, int idx, const char *mt, const char *what);

/* Stores the value at idx in slot (nil empties it); pushes a slot's value. */
void lorch_handle_ref(lua_State *L, lorch_handle *h, int slot, int idx);
void lorch_handle_push(lua_State *L, lorch_handle *h, int slot);

/* Keeps the userdata at idx alive (until release or close). */
void lorch_handle_keep(lua_State *L, lorch_handle *h, int idx);
void lorch_handle_release(lua_State *L, lorch_handle *h);

/* Closes the handle at idx (see above); a no-op when it is closed already. */
void lorch_handle_close(lua_State *L, int idx, const char *mt);

/* For close functions: uv_close on a handle inside the object, which is
 * freed in the close callback. */
void lorch_handle_uv_close(lorch_handle *h, uv_handle_t *uvh);

#endif
