/* ltui.c - orch.core.tui: the split-pane terminal view (tui/, ncursesw).
 *
 *   local scr, err = tui.open{on_key = fn(name), on_frame = fn(),
 *                             on_resize = fn(cols, rows), fps = 30,
 *                             max_tiles = 4, no_color = false, log = PATH,
 *                             in_fd = 0, out_fd = 2}
 *   scr:pane{kind = 'agent'|'orch'|'detail', scrollback = 10000} -> pane
 *   scr:size() -> cols, rows      scr:utf8() -> bool
 *   scr:focus([pane|id]) -> id    scr:move_focus('h'|'j'|'k'|'l') -> id
 *   scr:cycle(+1|-1) -> id        scr:zoom([bool]) -> bool
 *   scr:status(left, right)       scr:prompt(text|nil)
 *   scr:dialog(title, {lines}|nil)  scr:max_tiles(n)  scr:log_pane(pane|nil)
 *   scr:redraw([now])  scr:ref(bool)  scr:suspend()  scr:resume()
 *   scr:stats() -> {frames, draw_ms_total, draw_ms_max, keys}  scr:close()
 *
 *   pane:id()  pane:push(text, [style], [full])  pane:push_lines(list, [style])
 *   pane:replace_last(text, [style], [full])   (a line still being written)
 *   pane:clear()  pane:title(s)  pane:symbol(sym, color)  pane:head({lines})
 *   pane:show(bool)  pane:visible()  pane:order(n)  pane:expand([bool]) -> bool
 *   pane:scroll(n)  pane:half(+1|-1)  pane:top()  pane:bottom()
 *   pane:scroll_pos()  pane:search(pattern|nil, dir) -> found
 *   pane:count()  pane:pushed()  pane:close()
 *
 *   tui.redirect(path) / tui.restore(): stderr (and a terminal stdout) to a
 *   file while the view draws; tui.detach(path): leave the terminal for
 *   good; tui.foreground_leader() -> bool.
 *
 * Styles: normal stderr tool result meta error text question. Colours:
 * default red green yellow blue magenta cyan dim. One view at a time (a
 * process has one terminal): panes are found by id in the open view, and a
 * pane of a closed view raises. */
#include "lorch.h"

#include "err.h"
#include "../../tui/tui.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LTUI_MT "orch.tui"
#define LTUI_PANE_MT "orch.tui.pane"

typedef struct ltui {
    tui_screen *s;
    int key_ref, frame_ref, resize_ref;
    unsigned gen;
} ltui;

typedef struct ltui_pane_ud {
    int id;
    unsigned gen;
} ltui_pane_ud;

static ltui *ltui_cur;     /* the open view */
static unsigned ltui_gen;  /* bumped at every open */
static tui_saved_fds ltui_saved = {{-1, -1, -1}};

static const char *const ltui_styles[] = {"normal", "stderr", "tool", "result",
                                          "meta", "error", "text", "question",
                                          NULL};
static const char *const ltui_colors[] = {"default", "red", "green", "yellow",
                                          "blue", "magenta", "cyan", "dim", NULL};

/* ------------------------------------------------------------ callbacks */

static void ltui_on_key(void *ud, const char *key)
{
    ltui *t = ud;
    lua_State *L = lorch_state();
    if (t->key_ref == LUA_NOREF)
        return;
    lorch_push(L, t->key_ref);
    lua_pushstring(L, key);
    lorch_call(L, 1, 0);
}

static void ltui_on_frame(void *ud)
{
    ltui *t = ud;
    lua_State *L = lorch_state();
    if (t->frame_ref == LUA_NOREF)
        return;
    lorch_push(L, t->frame_ref);
    lorch_call(L, 0, 0);
}

static void ltui_on_resize(void *ud, int cols, int rows)
{
    ltui *t = ud;
    lua_State *L = lorch_state();
    if (t->resize_ref == LUA_NOREF)
        return;
    lorch_push(L, t->resize_ref);
    lua_pushinteger(L, cols);
    lua_pushinteger(L, rows);
    lorch_call(L, 2, 0);
}

/* ------------------------------------------------------------ the view */

static ltui *ltui_check(lua_State *L, int idx)
{
    ltui **u = luaL_checkudata(L, idx, LTUI_MT);
    lorch_check_open(L, *u && (*u)->s, "terminal view");
    return *u;
}

static int ltui_ref_field(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    if (!lua_isnil(L, -1))
        luaL_checktype(L, -1, LUA_TFUNCTION);
    return lorch_ref(L);
}

static void ltui_release(lua_State *L, ltui *t)
{
    lorch_unref(L, &t->key_ref);
    lorch_unref(L, &t->frame_ref);
    lorch_unref(L, &t->resize_ref);
}

static int ltui_open(lua_State *L)
{
    tui_options o = {0};
    tui_callbacks cb = {0};
    ltui **u, *t;
    int rc;

    luaL_checktype(L, 1, LUA_TTABLE);
    o.in_fd = (int)lorch_opt_int_field(L, 1, "in_fd", 0);
    o.out_fd = (int)lorch_opt_int_field(L, 1, "out_fd", 2);
    o.fps = (int)lorch_opt_int_field(L, 1, "fps", 30);
    o.max_tiles = (int)lorch_opt_int_field(L, 1, "max_tiles", 4);
    o.no_color = lorch_opt_bool_field(L, 1, "no_color", 0);
    o.log_path = lorch_opt_str_field(L, 1, "log", NULL);
    if (ltui_cur)
        return lorch_fail(L, -EBUSY, "the terminal view is already open");
    u = lua_newuserdata(L, sizeof *u);
    *u = NULL;
    luaL_getmetatable(L, LTUI_MT);
    lua_setmetatable(L, -2);
    t = calloc(1, sizeof *t);
    if (!t)
        return luaL_error(L, "out of memory");
    t->key_ref = ltui_ref_field(L, 1, "on_key");
    t->frame_ref = ltui_ref_field(L, 1, "on_frame");
    t->resize_ref = ltui_ref_field(L, 1, "on_resize");
    cb.on_key = ltui_on_key;
    cb.on_frame = ltui_on_frame;
    cb.on_resize = ltui_on_resize;
    cb.ud = t;
    rc = tui_screen_open(&t->s, lorch_loop(), &o, &cb);
    if (rc < 0) {
        ltui_release(L, t);
        free(t);
        return lorch_fail(L, rc, orch_err_msg());
    }
    t->gen = ++ltui_gen;
    ltui_cur = t;
    *u = t;
    return 1;
}

static void ltui_close_view(lua_State *L, ltui **u)
{
    ltui *t = *u;
    if (!t)
        return;
    *u = NULL;
    if (t->s)
        tui_screen_close(t->s);
    t->s = NULL;
    ltui_release(L, t);
    if (ltui_cur == t)
        ltui_cur = NULL;
    free(t);
}

static int ltui_m_close(lua_State *L)
{
    ltui_close_view(L, luaL_checkudata(L, 1, LTUI_MT));
    return 0;
}

static int ltui_m_size(lua_State *L)
{
    int c, r;
    tui_screen_size(ltui_check(L, 1)->s, &c, &r);
    lua_pushinteger(L, c);
    lua_pushinteger(L, r);
    return 2;
}

static int ltui_m_utf8(lua_State *L)
{
    lua_pushboolean(L, tui_screen_utf8(ltui_check(L, 1)->s));
    return 1;
}

static int ltui_pane_push_ud(lua_State *L, ltui *t, tui_pane *p)
{
    ltui_pane_ud *pu = lua_newuserdata(L, sizeof *pu);
    pu->id = tui_pane_id(p);
    pu->gen = t->gen;
    luaL_getmetatable(L, LTUI_PANE_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int ltui_m_pane(lua_State *L)
{
    static const char *const kinds[] = {"agent", "orch", "detail", NULL};
    ltui *t = ltui_check(L, 1);
    int kind = 0;
    lua_Integer sb = 10000;
    tui_pane *p;

    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "kind");
        kind = luaL_checkoption(L, -1, "agent", kinds);
        lua_pop(L, 1);
        sb = lorch_opt_int_field(L, 2, "scrollback", 10000);
    }
    luaL_argcheck(L, sb >= 1 && sb <= 100000000, 2, "scrollback out of range");
    p = tui_pane_new(t->s, kind, (size_t)sb);
    if (!p)
        return lorch_fail(L, -ENOMEM, orch_err_msg());
    return ltui_pane_push_ud(L, t, p);
}

static int ltui_pane_arg_id(lua_State *L, int idx)
{
    if (lua_isnumber(L, idx))
        return (int)lua_tointeger(L, idx);
    return ((ltui_pane_ud *)luaL_checkudata(L, idx, LTUI_PANE_MT))->id;
}

static int ltui_m_focus(lua_State *L)
{
    ltui *t = ltui_check(L, 1);
    if (!lua_isnoneornil(L, 2))
        tui_screen_set_focus(t->s, ltui_pane_arg_id(L, 2));
    lua_pushinteger(L, tui_screen_focus(t->s));
    return 1;
}

static int ltui_m_move_focus(lua_State *L)
{
    ltui *t = ltui_check(L, 1);
    const char *d = luaL_checkstring(L, 2);
    luaL_argcheck(L, strlen(d) == 1 && strchr("hjkl", d[0]), 2, "h, j, k or l");
    lua_pushinteger(L, tui_screen_move_focus(t->s, d[0]));
    return 1;
}

static int ltui_m_cycle(lua_State *L)
{
    ltui *t = ltui_check(L, 1);
    lua_pushinteger(L, tui_screen_cycle(t->s, (int)luaL_optinteger(L, 2, 1)));
    return 1;
}

static int ltui_m_zoom(lua_State *L)
{
    ltui *t = ltui_check(L, 1);
    if (!lua_isnoneornil(L, 2))
        tui_screen_set_zoom(t->s, lua_toboolean(L, 2));
    lua_pushboolean(L, tui_screen_zoom(t->s));
    return 1;
}

static int ltui_check_rc(lua_State *L, int rc)
{
    if (rc < 0)
        return luaL_error(L, "%s", orch_err_msg());
    return 0;
}

static int ltui_m_status(lua_State *L)
{
    ltui *t = ltui_check(L, 1);
    ltui_check_rc(L, tui_screen_set_status(t->s, luaL_optstring(L, 2, ""),
                                           luaL_optstring(L, 3, NULL)));
    return 0;
}

static int ltui_m_prompt(lua_State *L)
{
    ltui *t = ltui_check(L, 1);
    ltui_check_rc(L, tui_screen_set_prompt(t->s, luaL_optstring(L, 2, NULL)));
    return 0;
}

/* Reads a list of strings at idx into a malloc'd array of borrowed pointers
 * (the strings stay alive in the table while the call runs). */
static const char **ltui_strings(lua_State *L, int idx, size_t *n)
{
    size_t len;
    const char **v;
    luaL_checktype(L, idx, LUA_TTABLE);
    len = lua_objlen(L, idx);
    v = calloc(len ? len : 1, sizeof *v);
    if (!v)
        luaL_error(L, "out of memory");
    for (size_t i = 0; i < len; i++) {
        lua_rawgeti(L, idx, (int)i + 1);
        v[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
        if (!v[i]) {
            free(v);
            luaL_error(L, "line %d is not a string", (int)i + 1);
        }
    }
    *n = len;
    return v;
}

static int ltui_m_dialog(lua_State *L)
{
    ltui *t = ltui_check(L, 1);
    const char *title = luaL_optstring(L, 2, "");
    size_t n = 0;
    const char **v;
    int rc;
    if (lua_isnoneornil(L, 3)) {
        ltui_check_rc(L, tui_screen_set_dialog(t->s, NULL, NULL, 0));
        return 0;
    }
    v = ltui_strings(L, 3, &n);
    rc = tui_screen_set_dialog(t->s, title, v, n);
    free(v);
    ltui_check_rc(L, rc);
    return 0;
}

static int ltui_m_max_tiles(lua_State *L)
{
    tui_screen_set_max_tiles(ltui_check(L, 1)->s, (int)luaL_checkinteger(L, 2));
    return 0;
}

static int ltui_m_log_pane(lua_State *L)
{
    ltui *t = ltui_check(L, 1);
    tui_screen_set_log_pane(t->s, lua_isnoneornil(L, 2) ? 0 : ltui_pane_arg_id(L, 2));
    return 0;
}

static int ltui_m_redraw(lua_State *L)
{
    tui_screen_dirty(ltui_check(L, 1)->s, lua_toboolean(L, 2));
    return 0;
}

static int ltui_m_ref(lua_State *L)
{
    tui_screen_ref(ltui_check(L, 1)->s, lua_toboolean(L, 2));
    return 0;
}

static int ltui_m_suspend(lua_State *L)
{
    tui_screen_suspend(ltui_check(L, 1)->s);
    return 0;
}

static int ltui_m_resume(lua_State *L)
{
    tui_screen_resume(ltui_check(L, 1)->s);
    return 0;
}

static int ltui_m_stats(lua_State *L)
{
    tui_stats st;
    tui_screen_stats(ltui_check(L, 1)->s, &st);
    lua_createtable(L, 0, 4);
    lua_pushnumber(L, (lua_Number)st.frames);
    lua_setfield(L, -2, "frames");
    lua_pushnumber(L, (lua_Number)st.draw_ns_total / 1e6);
    lua_setfield(L, -2, "draw_ms_total");
    lua_pushnumber(L, (lua_Number)st.draw_ns_max / 1e6);
    lua_setfield(L, -2, "draw_ms_max");
    lua_pushnumber(L, (lua_Number)st.keys);
    lua_setfield(L, -2, "keys");
    lua_pushnumber(L, (lua_Number)st.turns);
    lua_setfield(L, -2, "turns");
    lua_pushnumber(L, (lua_Number)st.turn_ns_max / 1e6);
    lua_setfield(L, -2, "turn_ms_max");
    lua_pushnumber(L, (lua_Number)st.turns_over_frame);
    lua_setfield(L, -2, "turns_over_frame");
    return 1;
}

static const luaL_Reg ltui_methods[] = {
    {"close", ltui_m_close},
    {"size", ltui_m_size},
    {"utf8", ltui_m_utf8},
    {"pane", ltui_m_pane},
    {"focus", ltui_m_focus},
    {"move_focus", ltui_m_move_focus},
    {"cycle", ltui_m_cycle},
    {"zoom", ltui_m_zoom},
    {"status", ltui_m_status},
    {"prompt", ltui_m_prompt},
    {"dialog", ltui_m_dialog},
    {"max_tiles", ltui_m_max_tiles},
    {"log_pane", ltui_m_log_pane},
    {"redraw", ltui_m_redraw},
    {"ref", ltui_m_ref},
    {"suspend", ltui_m_suspend},
    {"resume", ltui_m_resume},
    {"stats", ltui_m_stats},
    {"__gc", ltui_m_close},
    {NULL, NULL},
};

/* ------------------------------------------------------------ panes */

static tui_pane *ltui_pane_check(lua_State *L, int idx, ltui **tp)
{
    ltui_pane_ud *pu = luaL_checkudata(L, idx, LTUI_PANE_MT);
    tui_pane *p;
    lorch_check_open(L, ltui_cur && ltui_cur->s && pu->gen == ltui_cur->gen,
                     "terminal view");
    p = tui_screen_pane(ltui_cur->s, pu->id);
    lorch_check_open(L, p != NULL, "pane");
    if (tp)
        *tp = ltui_cur;
    return p;
}

static int ltui_p_id(lua_State *L)
{
    lua_pushinteger(L, ((ltui_pane_ud *)luaL_checkudata(L, 1, LTUI_PANE_MT))->id);
    return 1;
}

static int ltui_p_push(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    size_t n, fn = 0;
    const char *s = luaL_checklstring(L, 2, &n);
    int style = luaL_checkoption(L, 3, "normal", ltui_styles);
    const char *full = luaL_optlstring(L, 4, NULL, &fn);
    ltui_check_rc(L, tui_pane_push(t->s, p, s, n, style, full, fn));
    return 0;
}

static int ltui_p_replace_last(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    size_t n, fn = 0;
    const char *s = luaL_checklstring(L, 2, &n);
    int style = luaL_checkoption(L, 3, "normal", ltui_styles);
    const char *full = luaL_optlstring(L, 4, NULL, &fn);
    ltui_check_rc(L, tui_pane_replace_last(t->s, p, s, n, style, full, fn));
    return 0;
}

static int ltui_p_push_lines(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    int style = luaL_checkoption(L, 3, "normal", ltui_styles);
    size_t len;
    luaL_checktype(L, 2, LUA_TTABLE);
    len = lua_objlen(L, 2);
    for (size_t i = 1; i <= len; i++) {
        size_t n;
        const char *s;
        lua_rawgeti(L, 2, (int)i);
        s = lua_tolstring(L, -1, &n);
        if (s && tui_pane_push(t->s, p, s, n, style, NULL, 0) < 0) {
            lua_pop(L, 1);
            return luaL_error(L, "%s", orch_err_msg());
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int ltui_p_clear(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    tui_pane_clear(t->s, p);
    return 0;
}

static int ltui_p_title(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    ltui_check_rc(L, tui_pane_set_title(t->s, p, luaL_checkstring(L, 2)));
    return 0;
}

static int ltui_p_symbol(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    tui_pane_set_symbol(t->s, p, luaL_checkstring(L, 2),
                        luaL_checkoption(L, 3, "default", ltui_colors));
    return 0;
}

static int ltui_p_head(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    size_t n;
    const char **v = ltui_strings(L, 2, &n);
    int rc = tui_pane_set_head(t->s, p, v, n);
    free(v);
    ltui_check_rc(L, rc);
    return 0;
}

static int ltui_p_show(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    tui_pane_set_visible(t->s, p, lua_toboolean(L, 2));
    return 0;
}

static int ltui_p_visible(lua_State *L)
{
    lua_pushboolean(L, tui_pane_visible(ltui_pane_check(L, 1, NULL)));
    return 1;
}

static int ltui_p_order(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    tui_pane_set_order(t->s, p, (int)luaL_checkinteger(L, 2));
    return 0;
}

static int ltui_p_expand(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    if (!lua_isnoneornil(L, 2))
        tui_pane_set_expanded(t->s, p, lua_toboolean(L, 2));
    lua_pushboolean(L, tui_pane_expanded(p));
    return 1;
}

static int ltui_p_scroll(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    tui_pane_scroll(t->s, p, (long)luaL_checkinteger(L, 2));
    return 0;
}

static int ltui_p_half(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    tui_pane_scroll_half(t->s, p, (int)luaL_checkinteger(L, 2));
    return 0;
}

static int ltui_p_top(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    tui_pane_scroll_to(t->s, p, -1);
    return 0;
}

static int ltui_p_bottom(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    tui_pane_scroll_to(t->s, p, 1);
    return 0;
}

static int ltui_p_scroll_pos(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)tui_pane_scroll_pos(ltui_pane_check(L, 1, NULL)));
    return 1;
}

static int ltui_p_search(lua_State *L)
{
    ltui *t;
    tui_pane *p = ltui_pane_check(L, 1, &t);
    const char *pat = luaL_optstring(L, 2, NULL);
    int dir = (int)luaL_optinteger(L, 3, -1);
    lua_pushboolean(L, tui_pane_search(t->s, p, pat, dir));
    return 1;
}

static int ltui_p_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)tui_pane_count(ltui_pane_check(L, 1, NULL)));
    return 1;
}

static int ltui_p_pushed(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)tui_pane_pushed(ltui_pane_check(L, 1, NULL)));
    return 1;
}

static int ltui_p_close(lua_State *L)
{
    ltui_pane_ud *pu = luaL_checkudata(L, 1, LTUI_PANE_MT);
    tui_pane *p;
    if (!ltui_cur || !ltui_cur->s || pu->gen != ltui_cur->gen)
        return 0;
    p = tui_screen_pane(ltui_cur->s, pu->id);
    if (p)
        tui_pane_free(ltui_cur->s, p);
    return 0;
}

static const luaL_Reg ltui_pane_methods[] = {
    {"id", ltui_p_id},
    {"push", ltui_p_push},
    {"push_lines", ltui_p_push_lines},
    {"replace_last", ltui_p_replace_last},
    {"clear", ltui_p_clear},
    {"title", ltui_p_title},
    {"symbol", ltui_p_symbol},
    {"head", ltui_p_head},
    {"show", ltui_p_show},
    {"visible", ltui_p_visible},
    {"order", ltui_p_order},
    {"expand", ltui_p_expand},
    {"scroll", ltui_p_scroll},
    {"half", ltui_p_half},
    {"top", ltui_p_top},
    {"bottom", ltui_p_bottom},
    {"scroll_pos", ltui_p_scroll_pos},
    {"search", ltui_p_search},
    {"count", ltui_p_count},
    {"pushed", ltui_p_pushed},
    {"close", ltui_p_close},
    {NULL, NULL},
};

/* ------------------------------------------------------------ terminal fds */

static int ltui_redirect(lua_State *L)
{
    int rc;
    if (ltui_saved.fd[1] >= 0 || ltui_saved.fd[2] >= 0)
        return luaL_error(L, "output is already redirected");
    rc = tui_term_redirect(luaL_checkstring(L, 1), &ltui_saved);
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int ltui_restore(lua_State *L)
{
    (void)L;
    tui_term_restore(&ltui_saved);
    return 0;
}

static int ltui_detach(lua_State *L)
{
    int rc;
    /* the saved terminal descriptors are not needed any more */
    for (int i = 0; i < 3; i++) {
        if (ltui_saved.fd[i] >= 0)
            close(ltui_saved.fd[i]);
        ltui_saved.fd[i] = -1;
    }
    rc = tui_term_detach(luaL_checkstring(L, 1));
    if (rc < 0)
        return lorch_fail(L, rc, orch_err_msg());
    lua_pushboolean(L, 1);
    return 1;
}

static int ltui_foreground_leader(lua_State *L)
{
    lua_pushboolean(L, tui_term_foreground_leader((int)luaL_optinteger(L, 1, 0)));
    return 1;
}

int lorch_open_tui(lua_State *L)
{
    lorch_class(L, LTUI_MT, ltui_methods);
    lua_pop(L, 1);
    lorch_class(L, LTUI_PANE_MT, ltui_pane_methods);
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, ltui_open);
    lua_setfield(L, -2, "open");
    lua_pushcfunction(L, ltui_redirect);
    lua_setfield(L, -2, "redirect");
    lua_pushcfunction(L, ltui_restore);
    lua_setfield(L, -2, "restore");
    lua_pushcfunction(L, ltui_detach);
    lua_setfield(L, -2, "detach");
    lua_pushcfunction(L, ltui_foreground_leader);
    lua_setfield(L, -2, "foreground_leader");
    return 1;
}
