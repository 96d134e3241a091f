/* tui.h - orch's split-pane terminal view (ncursesw), plain C, no Lua.
 *
 * The renderer owns the terminal while it is open: panes (each with a ring
 * buffer of lines, a scroll position, a search), their layout (the
 * orchestrator pane beside or above a grid of agent panes), the status line,
 * a prompt line, a dialog box; it decodes keys and hands them to its owner
 * by name ("j", "C-w", "Enter", "Up", "é"), and redraws at most once per
 * frame on a libuv timer. What the panes show and what keys do is the
 * owner's business (lua/orch/tui.lua through core/lua/ltui.c): neovim's
 * split, the UI in C and the policy in Lua.
 *
 * Modules: ring.c (scrollback), text.c (cleaning, widths), layout.c
 * (tiling), term.c (the terminal's file descriptors), screen.c (curses,
 * drawing, input, timers). */
#ifndef ORCH_TUI_H
#define ORCH_TUI_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* ------------------------------------------------------------ ring.c */

/* How a line is drawn. */
enum {
    TUI_S_NORMAL,
    TUI_S_STDERR,
    TUI_S_TOOL,
    TUI_S_RESULT,
    TUI_S_META,
    TUI_S_ERROR,
    TUI_S_TEXT,
    TUI_S_QUESTION,
    TUI_S_COUNT
};

/* A line of a pane: text is what shows condensed (cleaned, one line);
 * full (may be NULL) is what shows expanded (cleaned, may hold '\n'). */
typedef struct tui_line {
    char *text;
    char *full;
    uint32_t len, flen;
    uint8_t style;
} tui_line;

/* A bounded scrollback: the newest `cap` lines. Index 0 is the oldest kept;
 * `pushed` counts every line ever pushed (absolute index of the newest + 1). */
typedef struct tui_ring {
    tui_line *v;
    size_t cap, start, count;
    uint64_t pushed;
    size_t full_bytes; /* of the expanded texts kept */
    size_t trim;       /* the oldest `trim` lines have no expanded text */
} tui_ring;

/* The most bytes of expanded text one pane keeps (the condensed lines are
 * bounded by the line count and TUI_LINE_MAX). */
#define TUI_FULL_BUDGET (8u << 20)

int tui_ring_init(tui_ring *r, size_t cap);
void tui_ring_free(tui_ring *r);
void tui_ring_clear(tui_ring *r);
/* Copies s (n bytes, already cleaned) and full (fn bytes, may be NULL). */
int tui_ring_push(tui_ring *r, const char *s, size_t n, int style,
                  const char *full, size_t fn);
/* Drops the newest line. */
void tui_ring_pop(tui_ring *r);
const tui_line *tui_ring_at(const tui_ring *r, size_t i);

/* ------------------------------------------------------------ text.c */

/* The longest line kept in a pane (bytes); the rest is cut with "…". */
#define TUI_LINE_MAX 4096
/* The most kept of an expanded text. */
#define TUI_FULL_MAX 65536

/* Cleans n bytes of s into out (cap bytes, cap >= 8): ANSI escape
 * sequences dropped, tabs expanded to 8 columns, other control bytes and
 * (utf8) invalid UTF-8 shown as '?', (not utf8) bytes >= 0x80 as '?';
 * keep_nl keeps '\n'. Returns the bytes written (no terminating NUL). */
size_t tui_text_clean(const char *s, size_t n, char *out, size_t cap,
                      int utf8, int keep_nl);
/* How many bytes of s (n bytes, cleaned, no '\n') fit in maxcols columns;
 * *cols gets the columns they take. */
size_t tui_text_fit(const char *s, size_t n, int maxcols, int *cols, int utf8);
/* The columns s takes. */
int tui_text_width(const char *s, size_t n, int utf8);
/* Case-insensitive (ASCII) search; returns the offset or -1. */
long tui_text_find(const char *hay, size_t n, const char *needle, size_t nn);

/* ------------------------------------------------------------ layout.c */

typedef struct tui_rect {
    int x, y, w, h;
} tui_rect;

/* Tiles n cells into area (n >= 1): a grid of columns at least ~40 wide,
 * balanced rows, the last row's cells widened to fill. A vertical
 * separator column is left between cells of a row (sep[i] = 1 when cell i
 * has one at its right, at x + w). */
void tui_layout_grid(tui_rect area, int n, tui_rect *cells, int *sep);

/* The whole screen: the orchestrator pane and n agent panes over
 * cols x rows (the last row is the status line). *orch_sep is 1 when a
 * separator column sits right of the orchestrator pane. */
void tui_layout_screen(int cols, int rows, int n, tui_rect *orch,
                       int *orch_sep, tui_rect *cells, int *sep);

/* ------------------------------------------------------------ term.c */

/* The saved stdio descriptors of a redirection. */
typedef struct tui_saved_fds {
    int fd[3]; /* -1: not redirected */
} tui_saved_fds;

/* Sends stderr (and stdout when it is the terminal) to the file at path
 * (appended, created 0600), keeping the originals in *saved. */
int tui_term_redirect(const char *path, tui_saved_fds *saved);
/* Puts back what tui_term_redirect saved. */
void tui_term_restore(tui_saved_fds *saved);
/* Leaves the terminal for good: stdin from /dev/null, stdout and stderr to
 * path, SIGHUP ignored (closing the terminal no longer ends orch). */
int tui_term_detach(const char *path);
/* Whether this process leads the terminal's foreground process group
 * (started from a job-control shell in the foreground). */
int tui_term_foreground_leader(int fd);

/* ------------------------------------------------------------ screen.c */

enum { TUI_PANE_AGENT, TUI_PANE_ORCH, TUI_PANE_DETAIL };

/* Colours of a status symbol. */
enum {
    TUI_C_DEFAULT,
    TUI_C_RED,
    TUI_C_GREEN,
    TUI_C_YELLOW,
    TUI_C_BLUE,
    TUI_C_MAGENTA,
    TUI_C_CYAN,
    TUI_C_DIM,
    TUI_C_COUNT
};

typedef struct tui_pane tui_pane;
typedef struct tui_screen tui_screen;

typedef struct tui_callbacks {
    void (*on_key)(void *ud, const char *key);
    void (*on_frame)(void *ud);          /* before each draw */
    void (*on_resize)(void *ud, int cols, int rows);
    void *ud;
} tui_callbacks;

typedef struct tui_options {
    int in_fd, out_fd;      /* the terminal (dup'ed; the originals stay) */
    int fps;                /* most redraws per second (default 30) */
    int no_color;           /* NO_COLOR: symbols and attributes only */
    int max_tiles;          /* agent panes tiled at most (default 4) */
    const char *log_path;   /* a file to tail into the log pane, or NULL */
} tui_options;

/* Takes the terminal. Returns 0 and *out, or a negative errno (message in
 * orch_err_msg()). */
int tui_screen_open(tui_screen **out, uv_loop_t *loop, const tui_options *o,
                    const tui_callbacks *cb);
/* Gives the terminal back and frees everything (the handles close on the
 * loop; the memory goes with the last close callback). */
void tui_screen_close(tui_screen *s);
/* Leaves curses mode for a moment (shutdown messages, Ctrl+Z), and back. */
void tui_screen_suspend(tui_screen *s);
void tui_screen_resume(tui_screen *s);
/* Whether the screen's handles keep the loop alive (default: no). */
void tui_screen_ref(tui_screen *s, int ref);

void tui_screen_size(const tui_screen *s, int *cols, int *rows);
int tui_screen_utf8(const tui_screen *s);
/* Asks for a redraw: at the next frame, or (now) at once. */
void tui_screen_dirty(tui_screen *s, int now);
/* Draws at once (the timer's work). */
void tui_screen_draw(tui_screen *s);

int tui_screen_set_status(tui_screen *s, const char *left, const char *right);
/* A prompt replacing the status line (NULL: none); the cursor sits at its
 * end. */
int tui_screen_set_prompt(tui_screen *s, const char *text);
/* A box in the middle of the screen (lines NULL: none). */
int tui_screen_set_dialog(tui_screen *s, const char *title,
                          const char *const *lines, size_t n);
void tui_screen_set_max_tiles(tui_screen *s, int n);
/* The pane the log file's lines go to (0: none). */
void tui_screen_set_log_pane(tui_screen *s, int id);

/* Panes: made, found by id, freed. */
tui_pane *tui_pane_new(tui_screen *s, int kind, size_t scrollback);
tui_pane *tui_screen_pane(tui_screen *s, int id);
void tui_pane_free(tui_screen *s, tui_pane *p);
int tui_pane_id(const tui_pane *p);
size_t tui_pane_count(const tui_pane *p);
uint64_t tui_pane_pushed(const tui_pane *p);

/* Appends a line (cleaned here; text cut at its first newline). */
int tui_pane_push(tui_screen *s, tui_pane *p, const char *text, size_t n,
                  int style, const char *full, size_t fn);
/* Replaces the newest line (a line still being written: streamed text). */
int tui_pane_replace_last(tui_screen *s, tui_pane *p, const char *text, size_t n,
                          int style, const char *full, size_t fn);
void tui_pane_clear(tui_screen *s, tui_pane *p);
int tui_pane_set_title(tui_screen *s, tui_pane *p, const char *title);
int tui_pane_set_symbol(tui_screen *s, tui_pane *p, const char *sym, int color);
/* Fixed lines at the top of the pane (the orchestrator's DAG). */
int tui_pane_set_head(tui_screen *s, tui_pane *p, const char *const *lines,
                      size_t n);
void tui_pane_set_visible(tui_screen *s, tui_pane *p, int visible);
int tui_pane_visible(const tui_pane *p);
void tui_pane_set_order(tui_screen *s, tui_pane *p, int order);
void tui_pane_set_expanded(tui_screen *s, tui_pane *p, int on);
int tui_pane_expanded(const tui_pane *p);

/* Scrolling, in lines (entries) above the newest: by n (+ up, - down),
 * by pages (halves: n = +-1), to the top (where = -1) or bottom (1). */
void tui_pane_scroll(tui_screen *s, tui_pane *p, long n);
void tui_pane_scroll_half(tui_screen *s, tui_pane *p, int dir);
void tui_pane_scroll_to(tui_screen *s, tui_pane *p, int where);
size_t tui_pane_scroll_pos(const tui_pane *p);
/* Finds pattern (case-insensitive), searching older (dir < 0) or newer
 * (dir > 0) from the current match or the bottom of the view; scrolls to
 * it. Returns 1 when found. pattern NULL: the last one. */
int tui_pane_search(tui_screen *s, tui_pane *p, const char *pattern, int dir);

/* Focus and zoom. */
int tui_screen_focus(const tui_screen *s);
void tui_screen_set_focus(tui_screen *s, int id);
/* Moves the focus to the nearest shown pane in a direction ('h' 'j' 'k'
 * 'l'); returns the new focus. */
int tui_screen_move_focus(tui_screen *s, int dir);
/* Next (+1) or previous (-1) shown pane. */
int tui_screen_cycle(tui_screen *s, int dir);
void tui_screen_set_zoom(tui_screen *s, int on);
int tui_screen_zoom(const tui_screen *s);

/* Figures for the benchmark. */
typedef struct tui_stats {
    uint64_t frames, draw_ns_total, draw_ns_max, keys;
    uint64_t turns, turn_ns_max, turns_over_frame; /* the loop's turns */
} tui_stats;
void tui_screen_stats(const tui_screen *s, tui_stats *out);

#endif
