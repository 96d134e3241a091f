/* ring.c - a pane's scrollback: the newest `cap` lines, oldest dropped. */
#include "tui.h"

#include "err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int tui_ring_init(tui_ring *r, size_t cap)
{
    memset(r, 0, sizeof *r);
    if (cap == 0)
        cap = 1;
    r->v = calloc(cap, sizeof *r->v);
    if (!r->v)
        return orch_err_set(-ENOMEM, "out of memory for a scrollback of %zu lines", cap);
    r->cap = cap;
    return 0;
}

static void tui_line_free(tui_line *l)
{
    free(l->text);
    free(l->full);
    memset(l, 0, sizeof *l);
}

void tui_ring_clear(tui_ring *r)
{
    for (size_t i = 0; i < r->count; i++)
        tui_line_free(&r->v[(r->start + i) % r->cap]);
    r->start = r->count = r->trim = 0;
    r->full_bytes = 0;
}

void tui_ring_free(tui_ring *r)
{
    if (!r->v)
        return;
    tui_ring_clear(r);
    free(r->v);
    r->v = NULL;
    r->cap = 0;
}

static char *tui_dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

int tui_ring_push(tui_ring *r, const char *s, size_t n, int style,
                  const char *full, size_t fn)
{
    tui_line l = {0};
    tui_line *slot;

    l.text = tui_dup(s, n);
    l.full = full ? tui_dup(full, fn) : NULL;
    if (!l.text || (full && !l.full)) {
        tui_line_free(&l);
        return orch_err_set(-ENOMEM, "out of memory for a line");
    }
    l.len = (uint32_t)n;
    l.flen = full ? (uint32_t)fn : 0;
    l.style = (uint8_t)(style >= 0 && style < TUI_S_COUNT ? style : TUI_S_NORMAL);
    if (r->count == r->cap) {
        slot = &r->v[r->start];
        r->full_bytes -= slot->flen;
        tui_line_free(slot);
        r->start = (r->start + 1) % r->cap;
        r->count--;
        if (r->trim > 0)
            r->trim--;
    }
    slot = &r->v[(r->start + r->count) % r->cap];
    *slot = l;
    r->count++;
    r->pushed++;
    r->full_bytes += l.flen;
    /* the expanded texts have a budget of their own: past it, the oldest
     * lines keep only their condensed text */
    while (r->full_bytes > TUI_FULL_BUDGET && r->trim < r->count - 1) {
        slot = &r->v[(r->start + r->trim) % r->cap];
        r->full_bytes -= slot->flen;
        free(slot->full);
        slot->full = NULL;
        slot->flen = 0;
        r->trim++;
    }
    return 0;
}

void tui_ring_pop(tui_ring *r)
{
    tui_line *slot;
    if (r->count == 0)
        return;
    slot = &r->v[(r->start + r->count - 1) % r->cap];
    r->full_bytes -= slot->flen;
    tui_line_free(slot);
    r->count--;
    r->pushed--;
    if (r->trim > r->count)
        r->trim = r->count;
}

const tui_line *tui_ring_at(const tui_ring *r, size_t i)
{
    if (i >= r->count)
        return NULL;
    return &r->v[(r->start + i) % r->cap];
}
