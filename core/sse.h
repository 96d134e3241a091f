/* sse.h - an incremental Server-Sent Events parser.
 *
 * Feed it the bytes of a text/event-stream in chunks of any size, split at any
 * byte; it calls back once per dispatched event. It follows the WHATWG
 * "event stream interpretation": an optional UTF-8 BOM at the start of the
 * stream is skipped; lines end with CRLF, LF or CR (a CR at the end of one
 * chunk and an LF at the start of the next are one line end); a line starting
 * with ':' is a comment; "field: value" loses one leading space of the value;
 * a line with no colon is a field with an empty value; `data` lines are
 * joined with "\n"; `event` names the type ("message" when absent); `id`
 * sets the last event id (kept across events; ignored if it contains NUL);
 * `retry` is taken when it is all ASCII digits; other fields are ignored; an
 * empty line dispatches the event if any `data` line was seen. An event left
 * unfinished at the end of the stream is dropped (orch_sse_free).
 *
 * There is no size limit but memory: a line is buffered only while it is
 * incomplete, and each byte is scanned once, so a 10 MB event costs O(10 MB). */
#ifndef ORCH_SSE_H
#define ORCH_SSE_H

#include <stddef.h>

typedef struct orch_sse orch_sse;

typedef struct orch_sse_event {
    const char *type; /* "message" unless an `event` field said otherwise */
    size_t type_len;
    const char *data; /* the data lines joined by "\n" (data_len bytes, not
                         NUL-terminated: an event of one data line that
                         arrived in one piece points into the fed bytes) */
    size_t data_len;
    const char *id;   /* the last event id ("" if none; NUL-terminated) */
    size_t id_len;
    long retry;       /* a `retry` value seen in this event, or -1 */
} orch_sse_event;

/* Called once per event. The strings are valid until the callback returns. A
 * non-zero return stops orch_sse_feed, which returns that value. */
typedef int (*orch_sse_cb)(const orch_sse_event *ev, void *ud);

/* Creates a parser; NULL on out of memory (with orch_err_set). */
orch_sse *orch_sse_new(orch_sse_cb cb, void *ud);

/* Frees the parser; an unfinished event is dropped. NULL is fine. */
void orch_sse_free(orch_sse *p);

/* Parses `len` bytes. Returns 0, -ENOMEM (message set), -EBUSY if called
 * from inside its own callback, or the callback's non-zero return value. */
int orch_sse_feed(orch_sse *p, const char *buf, size_t len);

/* Forgets any partial line or event, the last event id and the BOM state, as
 * for a new stream. Not allowed from inside the callback (-EBUSY). */
int orch_sse_reset(orch_sse *p);

/* The last event id seen so far ("" if none) and the last `retry` value (-1
 * if none), e.g. for a reconnection. */
const char *orch_sse_last_id(const orch_sse *p);
long orch_sse_retry(const orch_sse *p);

#endif
