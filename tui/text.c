/* text.c - what a line may hold on screen: cleaning (escape sequences,
 * control bytes, invalid UTF-8), display widths, search. */
#include "tui.h"

#include <ctype.h>
#include <string.h>
#include <wchar.h>

/* Decodes one UTF-8 sequence at s (n > 0 bytes). Returns its length and
 * the code point in *cp, or 0 for an invalid (or truncated) sequence. */
static size_t tui_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    uint32_t c = s[0];
    size_t len, i;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        c &= 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        c &= 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        c &= 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    /* overlong forms, surrogates, beyond Unicode */
    if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

static int tui_cp_width(uint32_t cp)
{
    int w;
    if (cp < 0x80)
        return 1;
    w = wcwidth((wchar_t)cp);
    return w < 0 ? 1 : w;
}

/* Skips an escape sequence starting at s[0] == ESC; returns its length. */
static size_t tui_skip_escape(const unsigned char *s, size_t n)
{
    size_t i;
    if (n < 2)
        return n;
    if (s[1] == '[') { /* CSI: parameters, intermediates, a final byte */
        for (i = 2; i < n; i++)
            if (s[i] >= 0x40 && s[i] <= 0x7e)
                return i + 1;
        return n;
    }
    if (s[1] == ']' || s[1] == 'P' || s[1] == '_' || s[1] == '^') {
        /* OSC, DCS, APC, PM: up to BEL or ESC \ */
        for (i = 2; i < n; i++) {
            if (s[i] == 0x07)
                return i + 1;
            if (s[i] == 0x1b && i + 1 < n && s[i + 1] == '\\')
                return i + 2;
        }
        return n;
    }
    return 2;
}

size_t tui_text_clean(const char *src, size_t n, char *out, size_t cap,
                      int utf8, int keep_nl)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0, o = 0, room = cap > 4 ? cap - 4 : 0;
    int col = 0, cut = 0;

    while (i < n) {
        unsigned char c = s[i];
        if (o >= room) {
            cut = 1;
            break;
        }
        if (c == 0x1b) {
            i += tui_skip_escape(s + i, n - i);
            continue;
        }
        if (c == '\t') {
            int sp = 8 - col % 8;
            while (sp-- > 0 && o < room) {
                out[o++] = ' ';
                col++;
            }
            i++;
            continue;
        }
        if (c == '\r') {
            /* a carriage return inside a line overwrites it (progress bars):
             * keep what comes after the last one */
            i++;
            if (i < n && s[i] != '\n') {
                size_t keep = o;
                while (keep > 0 && out[keep - 1] != '\n')
                    keep--;
                o = keep;
                col = 0;
            }
            continue;
        }
        if (c == '\n') {
            out[o++] = keep_nl ? '\n' : ' ';
            col = keep_nl ? 0 : col + 1;
            i++;
            continue;
        }
        if (c < 0x20 || c == 0x7f) {
            out[o++] = '?';
            col++;
            i++;
            continue;
        }
        if (c < 0x80) {
            out[o++] = (char)c;
            col++;
            i++;
            continue;
        }
        if (utf8) {
            uint32_t cp;
            size_t len = tui_utf8_decode(s + i, n - i, &cp);
            if (len == 0 || (cp >= 0x80 && cp < 0xa0) || wcwidth((wchar_t)cp) < 0) {
                out[o++] = '?';
                col++;
                i += len ? len : 1;
                continue;
            }
            if (o + len > room) {
                cut = 1;
                break;
            }
            memcpy(out + o, s + i, len);
            o += len;
            col += tui_cp_width(cp);
            i += len;
            continue;
        }
        out[o++] = '?';
        col++;
        i++;
    }
    if (cut) {
        if (utf8 && cap - o >= 3) {
            memcpy(out + o, "\xe2\x80\xa6", 3); /* … */
            o += 3;
        } else if (o < cap) {
            out[o++] = '~';
        }
    }
    return o;
}

size_t tui_text_fit(const char *src, size_t n, int maxcols, int *cols, int utf8)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t i = 0;
    int c = 0;

    while (i < n) {
        int w = 1;
        size_t len = 1;
        if (utf8 && s[i] >= 0x80) {
            uint32_t cp;
            len = tui_utf8_decode(s + i, n - i, &cp);
            if (len == 0)
                len = 1;
            else
                w = tui_cp_width(cp);
        }
        if (c + w > maxcols)
            break;
        c += w;
        i += len;
    }
    if (cols)
        *cols = c;
    return i;
}

int tui_text_width(const char *s, size_t n, int utf8)
{
    int cols;
    tui_text_fit(s, n, 1 << 30, &cols, utf8);
    return cols;
}

long tui_text_find(const char *hay, size_t n, const char *needle, size_t nn)
{
    if (nn == 0)
        return 0;
    if (nn > n)
        return -1;
    for (size_t i = 0; i + nn <= n; i++) {
        size_t j = 0;
        while (j < nn && tolower((unsigned char)hay[i + j]) ==
                             tolower((unsigned char)needle[j]))
            j++;
        if (j == nn)
            return (long)i;
    }
    return -1;
}
