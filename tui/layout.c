/* layout.c - where the panes go: the orchestrator pane beside (wide
 * screens) or above (narrow ones) a grid of agent panes, the status line
 * last. Pure arithmetic, redone at every draw. */
#include "tui.h"

#define TUI_MIN_COL_W 40 /* a log line reads badly in less */
#define TUI_MIN_CELL_H 3 /* a title and two lines */

void tui_layout_grid(tui_rect area, int n, tui_rect *cells, int *sep)
{
    int c, r, idx = 0, y = area.y;

    if (n <= 0)
        return;
    c = area.w / TUI_MIN_COL_W;
    if (c < 1)
        c = 1;
    if (c > n)
        c = n;
    r = (n + c - 1) / c;
    c = (n + r - 1) / r; /* balanced: 4 -> 2x2, not 3+1 */
    while (area.h / r < TUI_MIN_CELL_H && c < n) {
        c++;
        r = (n + c - 1) / c;
    }
    for (int row = 0; row < r; row++) {
        int k = row < r - 1 ? c : n - c * (r - 1);
        int h = area.h / r + (row < area.h % r ? 1 : 0);
        int avail = area.w - (k - 1), x = area.x;
        for (int j = 0; j < k; j++) {
            int w = avail / k + (j < avail % k ? 1 : 0);
            cells[idx].x = x;
            cells[idx].y = y;
            cells[idx].w = w;
            cells[idx].h = h;
            sep[idx] = j < k - 1;
            x += w + 1;
            idx++;
        }
        y += h;
    }
}

void tui_layout_screen(int cols, int rows, int n, tui_rect *orch,
                       int *orch_sep, tui_rect *cells, int *sep)
{
    int h = rows - 1; /* the status line */
    tui_rect area;

    if (h < 1)
        h = 1;
    orch->x = orch->y = 0;
    *orch_sep = 0;
    if (n <= 0) {
        orch->w = cols;
        orch->h = h;
        return;
    }
    if (cols >= 120) {
        int ow = cols / 4;
        if (ow < 32)
            ow = 32;
        if (ow > 60)
            ow = 60;
        orch->w = ow;
        orch->h = h;
        *orch_sep = 1;
        area.x = ow + 1;
        area.y = 0;
        area.w = cols - ow - 1;
        area.h = h;
    } else {
        int oh = h / 3;
        if (oh > 12)
            oh = 12;
        if (oh < 3)
            oh = h >= 6 ? 3 : h / 2;
        orch->w = cols;
        orch->h = oh;
        area.x = 0;
        area.y = oh;
        area.w = cols;
        area.h = h - oh;
    }
    tui_layout_grid(area, n, cells, sep);
}
