/* screen.c - the terminal under curses: panes drawn into their tiles, the
 * status line, a prompt, a dialog; keys read on the loop and handed over
 * by name; redraws coalesced on a frame timer; SIGWINCH re-tiles.
 *
 * Drawing is a full repaint of curses' virtual screen at every frame
 * (cheap: the lines are cleaned when they arrive) and curses sends the
 * terminal only what changed. A burst of output only marks the screen
 * dirty; the frame timer draws at most `fps` times a second, and a key is
 * answered by a draw at once, so keys never wait behind output. */
#define NCURSES_WIDECHAR 1
#include "tui.h"

#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <ncursesw/curses.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <wchar.h>

#define TUI_MAX_PANES 256
#define TUI_LOG_CHUNK 65536

struct tui_pane {
    int id, kind, visible, expanded, order, color;
    char *title;
    char symbol[32];
    char **head;
    size_t nhead;
    tui_ring ring;
    size_t scroll;       /* entries above the newest */
    char *search;        /* the last pattern */
    int64_t match;       /* absolute index of the match, -1 none */
    int last_rows;       /* content rows at the last draw */
    tui_rect rect;       /* where it was drawn (shown = 1) */
    int shown;
};

struct tui_screen {
    uv_loop_t *loop;
    uv_poll_t input;
    uv_timer_t frame;
    uv_signal_t winch;
    uv_prepare_t turn;       /* measures the loop's turns (for the bench) */
    uint64_t turn_start;
    int handles_open, closing;
    SCREEN *scr;
    FILE *in, *out;
    int in_fd, out_fd;
    int utf8, color, suspended, hungup;
    int cols, rows;
    int fps, max_tiles;
    tui_pane *panes[TUI_MAX_PANES];
    size_t npanes;
    int next_id, focus, zoom;
    char *status_left, *status_right, *prompt;
    char *dialog_title;
    char **dialog;
    size_t ndialog;
    int dirty, clear;
    uint64_t last_draw_ns;
    tui_callbacks cb;
    int log_fd, log_pane;
    char *log_buf;
    size_t log_len;
    char *scratch; /* cleaning buffer */
    char *old_ctype;
    struct sigaction old_tstp;
    tui_stats stats;
};

static tui_screen *tui_active; /* for the atexit guard */

/* ------------------------------------------------------------ helpers */

static char *tui_strdup(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

static void tui_free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* A cleaned copy of s (one line unless keep_nl). */
static char *tui_clean_dup(tui_screen *s, const char *t, size_t n, int keep_nl,
                           size_t cap)
{
    size_t m;
    char *buf = cap > TUI_LINE_MAX + 8 ? malloc(cap) : s->scratch;
    char *d;
    if (!buf)
        return NULL;
    if (buf == s->scratch)
        cap = TUI_LINE_MAX + 8;
    m = tui_text_clean(t, n, buf, cap, s->utf8, keep_nl);
    d = malloc(m + 1);
    if (d) {
        memcpy(d, buf, m);
        d[m] = '\0';
    }
    if (buf != s->scratch)
        free(buf);
    return d;
}

static char **tui_clean_list(tui_screen *s, const char *const *lines, size_t n)
{
    char **v = calloc(n ? n : 1, sizeof *v);
    if (!v)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        v[i] = tui_clean_dup(s, lines[i], strlen(lines[i]), 0, 0);
        if (!v[i]) {
            tui_free_list(v, i);
            return NULL;
        }
    }
    return v;
}

static uint64_t tui_now_ns(void)
{
    return uv_hrtime();
}

/* ------------------------------------------------------------ attributes */

static attr_t tui_color_attr(const tui_screen *s, int color)
{
    if (color == TUI_C_DIM)
        return A_DIM;
    if (!s->color || color <= TUI_C_DEFAULT || color >= TUI_C_COUNT)
        return 0;
    return COLOR_PAIR(color);
}

static attr_t tui_style_attr(const tui_screen *s, int style)
{
    switch (style) {
    case TUI_S_STDERR:
        return s->color ? COLOR_PAIR(TUI_C_YELLOW) : A_DIM;
    case TUI_S_TOOL:
        return s->color ? COLOR_PAIR(TUI_C_CYAN) : A_BOLD;
    case TUI_S_RESULT:
    case TUI_S_META:
        return A_DIM;
    case TUI_S_ERROR:
        return A_BOLD | (s->color ? COLOR_PAIR(TUI_C_RED) : 0);
    case TUI_S_QUESTION:
        return A_BOLD | (s->color ? COLOR_PAIR(TUI_C_MAGENTA) : 0);
    default:
        return 0;
    }
}

/* Writes at most maxcols columns of t at (y, x); returns the columns used. */
static int tui_put(tui_screen *s, int y, int x, const char *t, size_t n,
                   int maxcols, attr_t attr)
{
    int cols = 0;
    size_t fit;
    if (maxcols <= 0 || n == 0)
        return 0;
    fit = tui_text_fit(t, n, maxcols, &cols, s->utf8);
    if (fit == 0)
        return 0;
    attrset(attr);
    mvaddnstr(y, x, t, (int)fit);
    attrset(A_NORMAL);
    return cols;
}

static int tui_puts(tui_screen *s, int y, int x, const char *t, int maxcols,
                    attr_t attr)
{
    return tui_put(s, y, x, t, strlen(t), maxcols, attr);
}

/* Repeats a one-column string (a line-drawing character) n times. */
static void tui_fill(tui_screen *s, int y, int x, int n, const char *ch, attr_t attr)
{
    attrset(attr);
    for (int i = 0; i < n; i++)
        mvaddstr(y, x + i, ch);
    attrset(A_NORMAL);
}

/* ------------------------------------------------------------ panes */

tui_pane *tui_pane_new(tui_screen *s, int kind, size_t scrollback)
{
    tui_pane *p;
    if (s->npanes >= TUI_MAX_PANES) {
        orch_err_set(-ENOSPC, "too many panes (at most %d)", TUI_MAX_PANES);
        return NULL;
    }
    p = calloc(1, sizeof *p);
    if (!p) {
        orch_err_set(-ENOMEM, "out of memory");
        return NULL;
    }
    if (tui_ring_init(&p->ring, scrollback) < 0) {
        free(p);
        return NULL;
    }
    p->id = ++s->next_id;
    p->kind = kind;
    p->visible = 1;
    p->order = p->id;
    p->match = -1;
    p->title = tui_strdup("");
    s->panes[s->npanes++] = p;
    if (!s->focus)
        s->focus = p->id;
    s->dirty = 1;
    return p;
}

tui_pane *tui_screen_pane(tui_screen *s, int id)
{
    for (size_t i = 0; i < s->npanes; i++)
        if (s->panes[i]->id == id)
            return s->panes[i];
    return NULL;
}

static void tui_pane_destroy(tui_pane *p)
{
    tui_ring_free(&p->ring);
    free(p->title);
    free(p->search);
    tui_free_list(p->head, p->nhead);
    free(p);
}

void tui_pane_free(tui_screen *s, tui_pane *p)
{
    for (size_t i = 0; i < s->npanes; i++) {
        if (s->panes[i] != p)
            continue;
        memmove(&s->panes[i], &s->panes[i + 1], (s->npanes - i - 1) * sizeof p);
        s->npanes--;
        break;
    }
    if (s->focus == p->id)
        s->focus = s->npanes ? s->panes[0]->id : 0;
    if (s->log_pane == p->id)
        s->log_pane = 0;
    tui_pane_destroy(p);
    s->dirty = 1;
}

int tui_pane_id(const tui_pane *p) { return p->id; }
size_t tui_pane_count(const tui_pane *p) { return p->ring.count; }
uint64_t tui_pane_pushed(const tui_pane *p) { return p->ring.pushed; }
int tui_pane_visible(const tui_pane *p) { return p->visible; }
int tui_pane_expanded(const tui_pane *p) { return p->expanded; }
size_t tui_pane_scroll_pos(const tui_pane *p) { return p->scroll; }

static void tui_mark(tui_screen *s, const tui_pane *p)
{
    if (!p || p->shown || p->visible)
        s->dirty = 1;
}

int tui_pane_push(tui_screen *s, tui_pane *p, const char *text, size_t n,
                  int style, const char *full, size_t fn)
{
    const char *nl = memchr(text, '\n', n);
    size_t m, fm = 0;
    char *fbuf = NULL;
    int rc;

    if (nl)
        n = (size_t)(nl - text);
    m = tui_text_clean(text, n, s->scratch, TUI_LINE_MAX + 8, s->utf8, 0);
    if (full) {
        size_t cap = (fn < TUI_FULL_MAX ? fn : TUI_FULL_MAX) * 2 + 16;
        fbuf = malloc(cap);
        if (!fbuf)
            return orch_err_set(-ENOMEM, "out of memory");
        fm = tui_text_clean(full, fn, fbuf, cap, s->utf8, 1);
    }
    rc = tui_ring_push(&p->ring, s->scratch, m, style, fbuf, fm);
    free(fbuf);
    if (rc < 0)
        return rc;
    if (p->scroll > 0 && p->scroll + 1 < p->ring.count)
        p->scroll++; /* a view scrolled back stays where it is */
    tui_mark(s, p);
    return 0;
}

int tui_pane_replace_last(tui_screen *s, tui_pane *p, const char *text, size_t n,
                          int style, const char *full, size_t fn)
{
    size_t scroll = p->scroll;
    int rc;
    tui_ring_pop(&p->ring);
    rc = tui_pane_push(s, p, text, n, style, full, fn);
    p->scroll = scroll; /* the same line, rewritten: the view does not move */
    return rc;
}

void tui_pane_clear(tui_screen *s, tui_pane *p)
{
    tui_ring_clear(&p->ring);
    p->scroll = 0;
    p->match = -1;
    tui_mark(s, p);
}

int tui_pane_set_title(tui_screen *s, tui_pane *p, const char *title)
{
    char *t = tui_clean_dup(s, title, strlen(title), 0, 0);
    if (!t)
        return orch_err_set(-ENOMEM, "out of memory");
    free(p->title);
    p->title = t;
    tui_mark(s, p);
    return 0;
}

int tui_pane_set_symbol(tui_screen *s, tui_pane *p, const char *sym, int color)
{
    snprintf(p->symbol, sizeof p->symbol, "%s", sym);
    p->color = color;
    tui_mark(s, p);
    return 0;
}

int tui_pane_set_head(tui_screen *s, tui_pane *p, const char *const *lines,
                      size_t n)
{
    char **v = tui_clean_list(s, lines, n);
    if (!v)
        return orch_err_set(-ENOMEM, "out of memory");
    tui_free_list(p->head, p->nhead);
    p->head = v;
    p->nhead = n;
    tui_mark(s, p);
    return 0;
}

void tui_pane_set_visible(tui_screen *s, tui_pane *p, int visible)
{
    if (p->visible != visible)
        s->dirty = 1;
    p->visible = visible;
}

void tui_pane_set_order(tui_screen *s, tui_pane *p, int order)
{
    p->order = order;
    s->dirty = 1;
}

void tui_pane_set_expanded(tui_screen *s, tui_pane *p, int on)
{
    p->expanded = on;
    tui_mark(s, p);
}

/* ------------------------------------------------------------ scrolling */

static size_t tui_max_scroll(const tui_pane *p)
{
    size_t rows = p->last_rows > 0 ? (size_t)p->last_rows : 1;
    if (p->expanded)
        return p->ring.count ? p->ring.count - 1 : 0;
    return p->ring.count > rows ? p->ring.count - rows : 0;
}

void tui_pane_scroll(tui_screen *s, tui_pane *p, long n)
{
    long v = (long)p->scroll + n;
    long max = (long)tui_max_scroll(p);
    if (v < 0)
        v = 0;
    if (v > max)
        v = max;
    p->scroll = (size_t)v;
    tui_mark(s, p);
}

void tui_pane_scroll_half(tui_screen *s, tui_pane *p, int dir)
{
    long half = p->last_rows > 1 ? p->last_rows / 2 : 1;
    tui_pane_scroll(s, p, dir > 0 ? half : -half);
}

void tui_pane_scroll_to(tui_screen *s, tui_pane *p, int where)
{
    p->scroll = where < 0 ? tui_max_scroll(p) : 0;
    tui_mark(s, p);
}

static int tui_line_matches(const tui_line *l, const char *pat, size_t n)
{
    if (tui_text_find(l->text, l->len, pat, n) >= 0)
        return 1;
    return l->full && tui_text_find(l->full, l->flen, pat, n) >= 0;
}

int tui_pane_search(tui_screen *s, tui_pane *p, const char *pattern, int dir)
{
    size_t count = p->ring.count, pn, rows;
    uint64_t base = p->ring.pushed - count;
    int64_t start;

    if (pattern) {
        char *c = tui_strdup(pattern);
        if (!c)
            return 0;
        free(p->search);
        p->search = c;
        p->match = -1;
    }
    if (!p->search || !*p->search || count == 0)
        return 0;
    pn = strlen(p->search);
    /* from the current match, else from the newest line in view */
    if (p->match >= (int64_t)base && p->match < (int64_t)p->ring.pushed)
        start = (p->match - (int64_t)base) + (dir < 0 ? -1 : 1);
    else
        start = (int64_t)count - 1 - (int64_t)p->scroll;
    for (size_t k = 0; k < count; k++) {
        int64_t i = ((start + (dir < 0 ? -(int64_t)k : (int64_t)k)) % (int64_t)count +
                     (int64_t)count) % (int64_t)count;
        const tui_line *l = tui_ring_at(&p->ring, (size_t)i);
        if (!tui_line_matches(l, p->search, pn))
            continue;
        p->match = (int64_t)base + i;
        rows = p->last_rows > 0 ? (size_t)p->last_rows : 1;
        /* the match in the middle of the view */
        {
            int64_t sc = (int64_t)count - 1 - i - (int64_t)rows / 2;
            if (sc < 0)
                sc = 0;
            if (sc > (int64_t)tui_max_scroll(p))
                sc = (int64_t)tui_max_scroll(p);
            p->scroll = (size_t)sc;
        }
        tui_mark(s, p);
        return 1;
    }
    p->match = -1;
    tui_mark(s, p);
    return 0;
}

/* ------------------------------------------------------------ layout */

static int tui_cmp_order(const void *a, const void *b)
{
    const tui_pane *x = *(tui_pane *const *)a, *y = *(tui_pane *const *)b;
    if (x->order != y->order)
        return x->order < y->order ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Decides where every pane goes; the shown ones in cycle order in list. */
static size_t tui_arrange(tui_screen *s, tui_pane **list, int *seps, int *orch_sep)
{
    tui_pane *agents[TUI_MAX_PANES], *orch = NULL, *detail = NULL;
    tui_rect cells[TUI_MAX_PANES], orect;
    int sep[TUI_MAX_PANES];
    size_t na = 0, n = 0;
    tui_pane *f = tui_screen_pane(s, s->focus);
    tui_rect full = {0, 0, s->cols, s->rows - 1};

    *orch_sep = 0;
    for (size_t i = 0; i < s->npanes; i++) {
        tui_pane *p = s->panes[i];
        p->shown = 0;
        if (!p->visible)
            continue;
        if (p->kind == TUI_PANE_ORCH && !orch)
            orch = p;
        else if (p->kind == TUI_PANE_DETAIL)
            detail = p;
        else if (p->kind == TUI_PANE_AGENT)
            agents[na++] = p;
    }
    qsort(agents, na, sizeof *agents, tui_cmp_order);
    if ((int)na > s->max_tiles)
        na = (size_t)s->max_tiles;
    if (full.h < 1)
        full.h = 1;
    if (detail || (s->zoom && f && f->visible)) {
        tui_pane *p = detail ? detail : f;
        p->rect = full;
        p->shown = 1;
        list[0] = p;
        seps[0] = 0;
        return 1;
    }
    tui_layout_screen(s->cols, s->rows, orch ? (int)na : 0, &orect, orch_sep, cells, sep);
    if (!orch) {
        if (na == 0)
            return 0;
        tui_layout_grid(full, (int)na, cells, sep);
    } else {
        orch->rect = orect;
        orch->shown = 1;
        list[n] = orch;
        seps[n++] = *orch_sep;
    }
    for (size_t i = 0; i < na; i++) {
        agents[i]->rect = cells[i];
        agents[i]->shown = 1;
        list[n] = agents[i];
        seps[n++] = sep[i];
    }
    return n;
}

/* ------------------------------------------------------------ drawing */

static const char *tui_hline(const tui_screen *s) { return s->utf8 ? "\xe2\x94\x80" : "-"; }
static const char *tui_vline(const tui_screen *s) { return s->utf8 ? "\xe2\x94\x82" : "|"; }

static void tui_draw_title(tui_screen *s, tui_pane *p, tui_rect r)
{
    int focused = p->id == s->focus;
    attr_t base = focused ? (A_REVERSE | A_BOLD) : A_BOLD;
    int x = r.x, end = r.x + r.w;
    char right[64] = "";
    int rw;

    if (p->scroll > 0)
        snprintf(right, sizeof right, " +%zu ", p->scroll);
    else if (p->ring.pushed > p->ring.count && p->kind == TUI_PANE_AGENT)
        snprintf(right, sizeof right, " %zu/%llu ", p->ring.count,
                 (unsigned long long)p->ring.pushed);
    rw = tui_text_width(right, strlen(right), s->utf8);
    if (rw > r.w / 3)
        rw = 0, right[0] = '\0';
    /* the focus marker, visible without colour */
    x += tui_puts(s, r.y, x, focused ? (s->utf8 ? "\xc2\xbb " : "> ") : "  ",
                  end - x, base);
    if (p->symbol[0]) {
        x += tui_puts(s, r.y, x, p->symbol, end - x,
                      base | tui_color_attr(s, p->color));
        x += tui_puts(s, r.y, x, " ", end - x, base);
    }
    x += tui_puts(s, r.y, x, p->title, end - x - rw - 1, base);
    if (x < end - rw) {
        x += tui_puts(s, r.y, x, " ", end - x - rw, base);
        if (x < end - rw)
            tui_fill(s, r.y, x, end - rw - x, tui_hline(s), focused ? base : A_DIM);
        x = end - rw;
    }
    if (rw > 0)
        tui_puts(s, r.y, end - rw, right, rw, base);
}

/* Draws (or counts, when draw is 0) the rows of an expanded text wrapped at
 * width w, skipping the first `skip` rows; returns the rows it takes. */
static int tui_wrap(tui_screen *s, const char *t, size_t n, int w, int skip,
                    int y, int x, int maxrows, attr_t attr, int draw)
{
    int rows = 0;
    size_t i = 0;
    if (w < 1)
        w = 1;
    for (;;) {
        const char *nl = memchr(t + i, '\n', n - i);
        size_t seg = nl ? (size_t)(nl - (t + i)) : n - i;
        size_t j = 0;
        do {
            int cols;
            size_t fit = tui_text_fit(t + i + j, seg - j, w, &cols, s->utf8);
            if (fit == 0 && j < seg)
                fit = 1; /* a character wider than the pane */
            if (draw && rows >= skip && rows - skip < maxrows)
                tui_put(s, y + rows - skip, x, t + i + j, fit, w, attr);
            rows++;
            j += fit;
        } while (j < seg);
        if (!nl)
            break;
        i += seg + 1;
    }
    return rows;
}

static void tui_draw_line(tui_screen *s, tui_pane *p, const tui_line *l,
                          int64_t abs, int y, int x, int w)
{
    attr_t attr = tui_style_attr(s, l->style);
    long at;
    size_t pn;
    int used;

    if (abs != p->match || !p->search) {
        tui_put(s, y, x, l->text, l->len, w, attr);
        return;
    }
    pn = strlen(p->search);
    at = tui_text_find(l->text, l->len, p->search, pn);
    if (at < 0) {
        tui_put(s, y, x, l->text, l->len, w, attr | A_UNDERLINE);
        return;
    }
    used = tui_put(s, y, x, l->text, (size_t)at, w, attr);
    used += tui_put(s, y, x + used, l->text + at, pn, w - used, A_REVERSE);
    tui_put(s, y, x + used, l->text + at + pn, l->len - (size_t)at - pn, w - used, attr);
}

static void tui_draw_ring(tui_screen *s, tui_pane *p, int y, int x, int w, int rows)
{
    size_t count = p->ring.count, bottom, top;
    uint64_t base = p->ring.pushed - count;

    p->last_rows = rows;
    if (rows <= 0 || count == 0)
        return;
    if (p->scroll > tui_max_scroll(p))
        p->scroll = tui_max_scroll(p);
    bottom = count - p->scroll;
    if (!p->expanded) {
        top = bottom > (size_t)rows ? bottom - (size_t)rows : 0;
        for (size_t i = top; i < bottom; i++)
            tui_draw_line(s, p, tui_ring_at(&p->ring, i), (int64_t)(base + i),
                          y + (int)(i - top), x, w);
        return;
    }
    /* expanded: fill from the bottom up with each entry's wrapped rows */
    {
        int need = rows, skip = 0, row = 0;
        size_t first = bottom;
        while (first > 0 && need > 0) {
            const tui_line *l = tui_ring_at(&p->ring, first - 1);
            const char *t = l->full ? l->full : l->text;
            size_t n = l->full ? l->flen : l->len;
            int h = tui_wrap(s, t, n, w, 0, 0, 0, 0, 0, 0);
            first--;
            if (h >= need) {
                skip = h - need;
                need = 0;
            } else {
                need -= h;
            }
        }
        for (size_t i = first; i < bottom && row < rows; i++) {
            const tui_line *l = tui_ring_at(&p->ring, i);
            const char *t = l->full ? l->full : l->text;
            size_t n = l->full ? l->flen : l->len;
            attr_t attr = tui_style_attr(s, l->style);
            if ((int64_t)(base + i) == p->match)
                attr |= A_UNDERLINE;
            row += tui_wrap(s, t, n, w, i == first ? skip : 0, y + row, x,
                            rows - row, attr, 1) - (i == first ? skip : 0);
        }
    }
}

static void tui_draw_pane(tui_screen *s, tui_pane *p, int sep)
{
    tui_rect r = p->rect;
    int rows, nh = 0;

    if (r.w <= 0 || r.h <= 0)
        return;
    tui_draw_title(s, p, r);
    rows = r.h - 1;
    if (p->nhead > 0 && rows > 0) {
        /* the head (the DAG) takes what it needs, leaving the log 3 rows */
        int room = p->ring.count > 0 && rows > 6 ? rows - 3 : rows;
        nh = (int)p->nhead < room ? (int)p->nhead : room;
        for (int i = 0; i < nh; i++)
            tui_puts(s, r.y + 1 + i, r.x, p->head[i], r.w, A_NORMAL);
    }
    tui_draw_ring(s, p, r.y + 1 + nh, r.x, r.w, rows - nh);
    if (sep)
        for (int i = 0; i < r.h; i++)
            tui_puts(s, r.y + i, r.x + r.w, tui_vline(s), 1, A_DIM);
}

static void tui_draw_status(tui_screen *s)
{
    int y = s->rows - 1, w = s->cols;
    if (y < 0)
        return;
    if (s->prompt) {
        int used = tui_puts(s, y, 0, s->prompt, w - 1, A_NORMAL);
        move(y, used < w ? used : w - 1);
        return;
    }
    tui_fill(s, y, 0, w, " ", A_REVERSE);
    if (s->status_right) {
        int rw = tui_text_width(s->status_right, strlen(s->status_right), s->utf8);
        if (rw < w) {
            int lw = tui_puts(s, y, 0, s->status_left ? s->status_left : "",
                              w - rw - 2, A_REVERSE);
            (void)lw;
            tui_puts(s, y, w - rw - 1, s->status_right, rw, A_REVERSE);
            return;
        }
    }
    tui_puts(s, y, 0, s->status_left ? s->status_left : "", w - 1, A_REVERSE);
}

static void tui_draw_dialog(tui_screen *s)
{
    int bw = 0, bh, x0, y0;
    const char *h = tui_hline(s), *v = tui_vline(s);
    const char *c[4];

    if (!s->dialog)
        return;
    if (s->utf8) {
        c[0] = "\xe2\x94\x8c"; c[1] = "\xe2\x94\x90";
        c[2] = "\xe2\x94\x94"; c[3] = "\xe2\x94\x98";
    } else {
        c[0] = c[1] = c[2] = c[3] = "+";
    }
    if (s->dialog_title)
        bw = tui_text_width(s->dialog_title, strlen(s->dialog_title), s->utf8) + 2;
    for (size_t i = 0; i < s->ndialog; i++) {
        int lw = tui_text_width(s->dialog[i], strlen(s->dialog[i]), s->utf8);
        if (lw > bw)
            bw = lw;
    }
    bw += 4;
    if (bw > s->cols - 2)
        bw = s->cols - 2;
    bh = (int)s->ndialog + 2;
    if (bh > s->rows - 2)
        bh = s->rows - 2;
    if (bw < 4 || bh < 3)
        return;
    x0 = (s->cols - bw) / 2;
    y0 = (s->rows - 1 - bh) / 2;
    if (y0 < 0)
        y0 = 0;
    for (int yy = 0; yy < bh; yy++)
        tui_fill(s, y0 + yy, x0, bw, " ", A_NORMAL);
    tui_puts(s, y0, x0, c[0], 1, A_BOLD);
    tui_fill(s, y0, x0 + 1, bw - 2, h, A_BOLD);
    tui_puts(s, y0, x0 + bw - 1, c[1], 1, A_BOLD);
    if (s->dialog_title) {
        int tx = x0 + 2;
        tx += tui_puts(s, y0, tx, " ", bw - 4, A_BOLD);
        tx += tui_puts(s, y0, tx, s->dialog_title, x0 + bw - 3 - tx, A_BOLD);
        tui_puts(s, y0, tx, " ", x0 + bw - 2 - tx, A_BOLD);
    }
    for (int i = 0; i < bh - 2; i++) {
        tui_puts(s, y0 + 1 + i, x0, v, 1, A_BOLD);
        tui_puts(s, y0 + 1 + i, x0 + 2, s->dialog[i], bw - 4, A_NORMAL);
        tui_puts(s, y0 + 1 + i, x0 + bw - 1, v, 1, A_BOLD);
    }
    tui_puts(s, y0 + bh - 1, x0, c[2], 1, A_BOLD);
    tui_fill(s, y0 + bh - 1, x0 + 1, bw - 2, h, A_BOLD);
    tui_puts(s, y0 + bh - 1, x0 + bw - 1, c[3], 1, A_BOLD);
}

void tui_screen_draw(tui_screen *s)
{
    tui_pane *list[TUI_MAX_PANES];
    int seps[TUI_MAX_PANES], orch_sep;
    size_t n;
    uint64_t t0;

    if (s->suspended || s->closing)
        return;
    if (s->cb.on_frame) {
        s->dirty = 0;
        s->cb.on_frame(s->cb.ud);
        if (s->closing || s->suspended)
            return;
    }
    t0 = tui_now_ns();
    s->last_draw_ns = t0;
    s->dirty = 0;
    if (s->clear) {
        clearok(curscr, TRUE);
        s->clear = 0;
    }
    erase();
    n = tui_arrange(s, list, seps, &orch_sep);
    for (size_t i = 0; i < n; i++)
        tui_draw_pane(s, list[i], seps[i]);
    tui_draw_status(s);
    tui_draw_dialog(s);
    curs_set(s->prompt ? 1 : 0);
    if (!s->prompt)
        move(s->rows - 1, s->cols - 1);
    wnoutrefresh(stdscr);
    doupdate();
    {
        uint64_t dt = tui_now_ns() - t0;
        s->stats.frames++;
        s->stats.draw_ns_total += dt;
        if (dt > s->stats.draw_ns_max)
            s->stats.draw_ns_max = dt;
    }
}

void tui_screen_dirty(tui_screen *s, int now)
{
    s->dirty = 1;
    if (now)
        tui_screen_draw(s);
}

/* ------------------------------------------------------------ focus */

int tui_screen_focus(const tui_screen *s) { return s->focus; }

void tui_screen_set_focus(tui_screen *s, int id)
{
    if (tui_screen_pane(s, id))
        s->focus = id;
    s->dirty = 1;
}

static void tui_layout_now(tui_screen *s, tui_pane **list, size_t *n)
{
    int seps[TUI_MAX_PANES], orch_sep;
    *n = tui_arrange(s, list, seps, &orch_sep);
}

int tui_screen_move_focus(tui_screen *s, int dir)
{
    tui_pane *list[TUI_MAX_PANES], *cur = tui_screen_pane(s, s->focus), *best = NULL;
    size_t n;
    long best_score = 0;

    if (s->zoom)
        return tui_screen_cycle(s, dir == 'h' || dir == 'k' ? -1 : 1);
    tui_layout_now(s, list, &n);
    if (!cur || !cur->shown)
        return n ? (s->focus = list[0]->id) : s->focus;
    for (size_t i = 0; i < n; i++) {
        tui_pane *p = list[i];
        tui_rect a = cur->rect, b = p->rect;
        long gap, off;
        if (p == cur)
            continue;
        switch (dir) {
        case 'h': gap = a.x - (b.x + b.w); break;
        case 'l': gap = b.x - (a.x + a.w); break;
        case 'k': gap = a.y - (b.y + b.h); break;
        default:  gap = b.y - (a.y + a.h); break;
        }
        if (gap < -1) /* not on that side */
            continue;
        if (dir == 'h' || dir == 'l')
            off = labs((long)(a.y + a.h / 2) - (long)(b.y + b.h / 2));
        else
            off = labs((long)(a.x + a.w / 2) - (long)(b.x + b.w / 2));
        if (!best || gap * 1000 + off < best_score) {
            best = p;
            best_score = gap * 1000 + off;
        }
    }
    if (best)
        s->focus = best->id;
    s->dirty = 1;
    return s->focus;
}

int tui_screen_cycle(tui_screen *s, int dir)
{
    tui_pane *list[TUI_MAX_PANES];
    size_t n, i;
    int zoom = s->zoom;

    s->zoom = 0; /* cycle over the tiled panes, then zoom the next */
    tui_layout_now(s, list, &n);
    s->zoom = zoom;
    if (n == 0)
        return s->focus;
    for (i = 0; i < n; i++)
        if (list[i]->id == s->focus)
            break;
    if (i == n)
        i = 0;
    else
        i = (i + n + (size_t)(dir < 0 ? -1 : 1)) % n;
    s->focus = list[i]->id;
    s->dirty = 1;
    return s->focus;
}

void tui_screen_set_zoom(tui_screen *s, int on)
{
    s->zoom = on;
    s->clear = 1;
    s->dirty = 1;
}

int tui_screen_zoom(const tui_screen *s) { return s->zoom; }

/* ------------------------------------------------------------ status, dialogs */

static int tui_replace(tui_screen *s, char **slot, const char *text)
{
    char *t = NULL;
    if (text) {
        t = tui_clean_dup(s, text, strlen(text), 0, 0);
        if (!t)
            return orch_err_set(-ENOMEM, "out of memory");
    }
    free(*slot);
    *slot = t;
    s->dirty = 1;
    return 0;
}

int tui_screen_set_status(tui_screen *s, const char *left, const char *right)
{
    int rc = tui_replace(s, &s->status_left, left);
    return rc < 0 ? rc : tui_replace(s, &s->status_right, right);
}

int tui_screen_set_prompt(tui_screen *s, const char *text)
{
    return tui_replace(s, &s->prompt, text);
}

int tui_screen_set_dialog(tui_screen *s, const char *title,
                          const char *const *lines, size_t n)
{
    char **v = NULL;
    int rc;
    if (lines) {
        v = tui_clean_list(s, lines, n);
        if (!v)
            return orch_err_set(-ENOMEM, "out of memory");
    }
    tui_free_list(s->dialog, s->ndialog);
    s->dialog = v;
    s->ndialog = lines ? n : 0;
    rc = tui_replace(s, &s->dialog_title, lines ? title : NULL);
    s->clear = 1;
    return rc;
}

void tui_screen_set_max_tiles(tui_screen *s, int n)
{
    s->max_tiles = n < 1 ? 1 : (n > TUI_MAX_PANES ? TUI_MAX_PANES : n);
    s->dirty = 1;
}

void tui_screen_set_log_pane(tui_screen *s, int id)
{
    s->log_pane = id;
}

void tui_screen_size(const tui_screen *s, int *cols, int *rows)
{
    *cols = s->cols;
    *rows = s->rows;
}

int tui_screen_utf8(const tui_screen *s) { return s->utf8; }

void tui_screen_stats(const tui_screen *s, tui_stats *out) { *out = s->stats; }

/* ------------------------------------------------------------ input */

static void tui_key_name(wint_t ch, int code, char *out, size_t cap)
{
    if (code == KEY_CODE_YES) {
        switch (ch) {
        case KEY_UP: snprintf(out, cap, "Up"); return;
        case KEY_DOWN: snprintf(out, cap, "Down"); return;
        case KEY_LEFT: snprintf(out, cap, "Left"); return;
        case KEY_RIGHT: snprintf(out, cap, "Right"); return;
        case KEY_HOME: snprintf(out, cap, "Home"); return;
        case KEY_END: snprintf(out, cap, "End"); return;
        case KEY_PPAGE: snprintf(out, cap, "PageUp"); return;
        case KEY_NPAGE: snprintf(out, cap, "PageDown"); return;
        case KEY_BACKSPACE: snprintf(out, cap, "Backspace"); return;
        case KEY_DC: snprintf(out, cap, "Delete"); return;
        case KEY_IC: snprintf(out, cap, "Insert"); return;
        case KEY_ENTER: snprintf(out, cap, "Enter"); return;
        case KEY_BTAB: snprintf(out, cap, "S-Tab"); return;
        default:
            if (ch >= KEY_F(1) && ch <= KEY_F(24)) {
                snprintf(out, cap, "F%d", (int)(ch - KEY_F(0)));
                return;
            }
            snprintf(out, cap, "Key%d", (int)ch);
            return;
        }
    }
    switch (ch) {
    case '\t': snprintf(out, cap, "Tab"); return;
    case '\r': case '\n': snprintf(out, cap, "Enter"); return;
    case 27: snprintf(out, cap, "Esc"); return;
    case 127: case 8: snprintf(out, cap, "Backspace"); return;
    case ' ': snprintf(out, cap, "Space"); return;
    case 0: snprintf(out, cap, "C-Space"); return;
    default: break;
    }
    if (ch < 32) {
        snprintf(out, cap, "C-%c", (char)('a' + ch - 1));
        return;
    }
    {
        mbstate_t st;
        char buf[MB_LEN_MAX + 1];
        size_t n;
        memset(&st, 0, sizeof st);
        n = wcrtomb(buf, (wchar_t)ch, &st);
        if (n == (size_t)-1)
            snprintf(out, cap, "U+%04X", (unsigned)ch);
        else
            snprintf(out, cap, "%.*s", (int)n, buf);
    }
}

static void tui_apply_size(tui_screen *s)
{
    struct winsize ws;
    if (ioctl(s->out_fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0)
        resize_term(ws.ws_row, ws.ws_col);
    s->cols = COLS;
    s->rows = LINES;
    s->clear = 1;
    if (s->cb.on_resize)
        s->cb.on_resize(s->cb.ud, s->cols, s->rows);
}

static void tui_on_input(uv_poll_t *h, int status, int events)
{
    tui_screen *s = h->data;
    int any = 0;
    if (status < 0 || (events & UV_DISCONNECT)) {
        /* the terminal hung up: nothing more will come; the owner is told
         * with the key "Hangup" */
        uv_poll_stop(h);
        s->hungup = 1;
        if (s->cb.on_key && !s->closing)
            s->cb.on_key(s->cb.ud, "Hangup");
        return;
    }
    while (!s->closing && !s->suspended) {
        wint_t ch;
        char name[64];
        int rc = wget_wch(stdscr, &ch);
        if (rc == ERR)
            break;
        if (rc == KEY_CODE_YES && ch == KEY_RESIZE) {
            tui_apply_size(s);
            any = 1;
            continue;
        }
        tui_key_name(ch, rc, name, sizeof name);
        s->stats.keys++;
        any = 1;
        if (s->cb.on_key)
            s->cb.on_key(s->cb.ud, name);
    }
    if (any && !s->closing && !s->suspended)
        tui_screen_draw(s); /* a key is answered at once, not at the next frame */
}

static void tui_on_winch(uv_signal_t *h, int sig)
{
    tui_screen *s = h->data;
    (void)sig;
    if (s->closing || s->suspended)
        return;
    tui_apply_size(s);
    tui_screen_draw(s);
}

/* Reads what was appended to the log file into the log pane. */
static void tui_tail_log(tui_screen *s)
{
    tui_pane *p;
    if (s->log_fd < 0)
        return;
    for (int round = 0; round < 4; round++) {
        ssize_t n = read(s->log_fd, s->log_buf + s->log_len, TUI_LOG_CHUNK - s->log_len);
        size_t start = 0;
        if (n <= 0)
            return;
        s->log_len += (size_t)n;
        p = tui_screen_pane(s, s->log_pane);
        for (size_t i = 0; i < s->log_len; i++) {
            if (s->log_buf[i] != '\n')
                continue;
            if (p)
                tui_pane_push(s, p, s->log_buf + start, i - start, TUI_S_META, NULL, 0);
            start = i + 1;
        }
        if (start == 0 && s->log_len == TUI_LOG_CHUNK) {
            if (p) /* a line longer than the buffer: shown in pieces */
                tui_pane_push(s, p, s->log_buf, s->log_len, TUI_S_META, NULL, 0);
            start = s->log_len;
        }
        memmove(s->log_buf, s->log_buf + start, s->log_len - start);
        s->log_len -= start;
    }
}

static void tui_on_turn(uv_prepare_t *h)
{
    tui_screen *s = h->data;
    uint64_t now = tui_now_ns();
    if (s->turn_start) {
        uint64_t dt = now - s->turn_start;
        s->stats.turns++;
        if (dt > s->stats.turn_ns_max)
            s->stats.turn_ns_max = dt;
        if (dt > 33000000ull)
            s->stats.turns_over_frame++;
    }
    s->turn_start = now;
}

static void tui_on_frame(uv_timer_t *h)
{
    tui_screen *s = h->data;
    if (s->closing || s->suspended)
        return;
    tui_tail_log(s);
    /* once a second at least: the clock in the orchestrator pane */
    if (s->dirty || tui_now_ns() - s->last_draw_ns >= 1000000000ull)
        tui_screen_draw(s);
}

/* ------------------------------------------------------------ open, close */

static void tui_atexit(void)
{
    if (tui_active && !tui_active->suspended) {
        set_term(tui_active->scr);
        endwin();
    }
}

static int tui_pick_locale(tui_screen *s)
{
    const char *cur = setlocale(LC_CTYPE, NULL);
    s->old_ctype = tui_strdup(cur ? cur : "C");
    setlocale(LC_CTYPE, "");
    return strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
}

static void tui_init_colors(tui_screen *s, const tui_options *o)
{
    const char *nc = getenv("NO_COLOR");
    s->color = !o->no_color && !(nc && *nc) && has_colors();
    if (!s->color)
        return;
    start_color();
    use_default_colors();
    init_pair(TUI_C_RED, COLOR_RED, -1);
    init_pair(TUI_C_GREEN, COLOR_GREEN, -1);
    init_pair(TUI_C_YELLOW, COLOR_YELLOW, -1);
    init_pair(TUI_C_BLUE, COLOR_BLUE, -1);
    init_pair(TUI_C_MAGENTA, COLOR_MAGENTA, -1);
    init_pair(TUI_C_CYAN, COLOR_CYAN, -1);
}

static void tui_closed_cb(uv_handle_t *h)
{
    tui_screen *s = h->data;
    if (--s->handles_open > 0)
        return;
    free(s);
}

static void tui_free_contents(tui_screen *s)
{
    for (size_t i = 0; i < s->npanes; i++)
        tui_pane_destroy(s->panes[i]);
    s->npanes = 0;
    free(s->status_left);
    free(s->status_right);
    free(s->prompt);
    free(s->dialog_title);
    tui_free_list(s->dialog, s->ndialog);
    free(s->log_buf);
    free(s->scratch);
    free(s->old_ctype);
    s->status_left = s->status_right = s->prompt = s->dialog_title = NULL;
    s->dialog = NULL;
    s->log_buf = s->scratch = s->old_ctype = NULL;
}

int tui_screen_open(tui_screen **out, uv_loop_t *loop, const tui_options *o,
                    const tui_callbacks *cb)
{
    static int atexit_done;
    tui_screen *s;
    struct sigaction before;
    int rc = 0, ifd = -1, ofd = -1;

    *out = NULL;
    if (tui_active)
        return orch_err_set(-EBUSY, "the terminal view is already open");
    s = calloc(1, sizeof *s);
    if (!s)
        return orch_err_set(-ENOMEM, "out of memory");
    s->loop = loop;
    s->cb = *cb;
    s->fps = o->fps > 0 ? o->fps : 30;
    s->max_tiles = o->max_tiles > 0 ? o->max_tiles : 4;
    s->log_fd = -1;
    s->in_fd = s->out_fd = -1;
    s->scratch = malloc(TUI_LINE_MAX + 8);
    s->log_buf = malloc(TUI_LOG_CHUNK);
    if (!s->scratch || !s->log_buf) {
        rc = orch_err_set(-ENOMEM, "out of memory");
        goto cleanup;
    }
    if (!isatty(o->in_fd) || !isatty(o->out_fd)) {
        rc = orch_err_set(-ENOTTY, "the terminal view needs a terminal");
        goto cleanup;
    }
    s->utf8 = tui_pick_locale(s);
    ifd = fcntl(o->in_fd, F_DUPFD_CLOEXEC, 3);
    ofd = fcntl(o->out_fd, F_DUPFD_CLOEXEC, 3);
    if (ifd < 0 || ofd < 0) {
        rc = orch_err_set(-errno, "cannot duplicate the terminal: %s", strerror(errno));
        goto cleanup;
    }
    s->in = fdopen(ifd, "r");
    if (s->in)
        ifd = -1;
    s->out = fdopen(ofd, "w");
    if (s->out)
        ofd = -1;
    if (!s->in || !s->out) {
        rc = orch_err_set(-errno, "cannot open the terminal: %s", strerror(errno));
        goto cleanup;
    }
    s->in_fd = fileno(s->in);
    s->out_fd = fileno(s->out);
    sigaction(SIGTSTP, NULL, &before);
    s->old_tstp = before;
    s->scr = newterm(NULL, s->out, s->in);
    if (!s->scr) {
        const char *t = getenv("TERM");
        rc = orch_err_set(-ENOTTY, "cannot use terminal type '%s'", t ? t : "(TERM unset)");
        goto cleanup;
    }
    set_term(s->scr);
    raw(); /* Ctrl-C and Ctrl-Z are keys: the policy decides */
    noecho();
    nonl();
    intrflush(stdscr, FALSE);
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    meta(stdscr, TRUE);
    set_escdelay(25);
    curs_set(0);
    tui_init_colors(s, o);
    s->cols = COLS;
    s->rows = LINES;
    if (o->log_path) {
        s->log_fd = open(o->log_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (s->log_fd >= 0)
            lseek(s->log_fd, 0, SEEK_END);
    }
    uv_poll_init(loop, &s->input, s->in_fd);
    uv_timer_init(loop, &s->frame);
    uv_signal_init(loop, &s->winch);
    uv_prepare_init(loop, &s->turn);
    s->input.data = s->frame.data = s->winch.data = s->turn.data = s;
    s->handles_open = 4;
    uv_prepare_start(&s->turn, tui_on_turn);
    uv_unref((uv_handle_t *)&s->turn);
    uv_poll_start(&s->input, UV_READABLE | UV_DISCONNECT, tui_on_input);
    uv_timer_start(&s->frame, tui_on_frame, 1000 / (uint64_t)s->fps,
                   1000 / (uint64_t)s->fps);
    uv_signal_start(&s->winch, tui_on_winch, SIGWINCH);
    tui_screen_ref(s, 0);
    tui_active = s;
    if (!atexit_done) {
        atexit(tui_atexit);
        atexit_done = 1;
    }
    s->dirty = 1;
    *out = s;
    return 0;
cleanup:
    if (ifd >= 0)
        close(ifd);
    if (ofd >= 0)
        close(ofd);
    if (s->in)
        fclose(s->in);
    if (s->out)
        fclose(s->out);
    if (s->old_ctype)
        setlocale(LC_CTYPE, s->old_ctype);
    tui_free_contents(s);
    free(s);
    return rc;
}

void tui_screen_ref(tui_screen *s, int ref)
{
    uv_handle_t *hs[3] = {(uv_handle_t *)&s->input, (uv_handle_t *)&s->frame,
                          (uv_handle_t *)&s->winch};
    for (int i = 0; i < 3; i++) {
        if (i == 0 && ref)
            uv_ref(hs[i]); /* waiting for a key keeps the loop alive */
        else
            uv_unref(hs[i]);
    }
}

void tui_screen_suspend(tui_screen *s)
{
    if (s->suspended)
        return;
    s->suspended = 1;
    uv_poll_stop(&s->input);
    set_term(s->scr);
    endwin();
    fflush(s->out);
}

void tui_screen_resume(tui_screen *s)
{
    if (!s->suspended || s->closing)
        return;
    s->suspended = 0;
    set_term(s->scr);
    reset_prog_mode();
    if (!s->hungup)
        uv_poll_start(&s->input, UV_READABLE | UV_DISCONNECT, tui_on_input);
    s->clear = 1;
    tui_screen_draw(s);
}

void tui_screen_close(tui_screen *s)
{
    if (!s || s->closing)
        return;
    if (!s->suspended) {
        set_term(s->scr);
        endwin();
    }
    s->closing = 1;
    uv_poll_stop(&s->input); /* before its descriptor is closed */
    delscreen(s->scr);
    s->scr = NULL;
    /* curses put its own Ctrl+Z handler in; it must not outlive the screen */
    sigaction(SIGTSTP, &s->old_tstp, NULL);
    fclose(s->in);
    fclose(s->out);
    if (s->log_fd >= 0)
        close(s->log_fd);
    if (s->old_ctype)
        setlocale(LC_CTYPE, s->old_ctype);
    tui_free_contents(s);
    if (tui_active == s)
        tui_active = NULL;
    uv_close((uv_handle_t *)&s->input, tui_closed_cb);
    uv_close((uv_handle_t *)&s->frame, tui_closed_cb);
    uv_close((uv_handle_t *)&s->winch, tui_closed_cb);
    uv_close((uv_handle_t *)&s->turn, tui_closed_cb);
}
