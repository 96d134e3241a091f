/* http.h - HTTP requests with streamed bodies on the libuv loop.
 *
 * One client owns a libcurl multi handle driven by the loop: curl tells us
 * which sockets to watch (uv_poll_t) and when to wake up (uv_timer_t), and we
 * call curl_multi_socket_action from those callbacks. No thread per request,
 * no polling. Many requests run at once on one client and share its
 * connection cache. curl's defaults are kept: the system CA store and the
 * proxy environment variables (http_proxy, https_proxy, no_proxy, ...).
 *
 * Callbacks run on the loop. From inside any of them it is fine to start new
 * requests and to cancel any request (the calling one too); the work is
 * deferred until curl has returned. */
#ifndef ORCH_HTTP_H
#define ORCH_HTTP_H

#include <stddef.h>
#include <uv.h>

typedef struct orch_http orch_http;
typedef struct orch_http_req orch_http_req;

typedef struct orch_http_header {
    const char *name; /* lower-cased */
    const char *value;
} orch_http_header;

typedef struct orch_http_opts {
    const char *method;          /* NULL: GET, or POST when there is a body */
    const char *url;             /* required */
    const char *const *headers;  /* "Name: value" lines */
    size_t nheaders;
    const char *body;            /* copied; NULL for none */
    size_t body_len;
    long connect_timeout_ms;     /* 0: curl's default (300 s) */
    long idle_timeout_ms;        /* 0: none. Fail when no byte of the
                                    response arrives for this long (counted
                                    from the start, then from the last byte) */
    long timeout_ms;             /* 0: none. The whole request. */
} orch_http_opts;

typedef struct orch_http_callbacks {
    /* The final response's status line and headers have arrived (once, before
     * any chunk; 1xx responses are skipped). */
    void (*on_headers)(orch_http_req *req, long status,
                       const orch_http_header *h, size_t n, void *ud);
    /* A piece of the body, as it arrives. */
    void (*on_chunk)(orch_http_req *req, const char *data, size_t len,
                     void *ud);
    /* The end: err is 0 when the whole response arrived (whatever its HTTP
     * status), else a negative errno (-ETIMEDOUT for the connect, idle and
     * total timeouts, -ECONNREFUSED, -EHOSTUNREACH, -EIO, ...) with a message.
     * status is the HTTP status (0 if none arrived). The request is freed when
     * this returns. */
    void (*on_done)(orch_http_req *req, int err, const char *msg, long status,
                    void *ud);
} orch_http_callbacks;

/* Creates a client on the loop; NULL on failure (orch_err_set). */
orch_http *orch_http_new(uv_loop_t *loop);

/* Cancels every request (no callbacks), closes the connections and frees the
 * client. The uv handles are closed here and their memory released by their
 * close callbacks, so the loop must run once more (uv_run) afterwards, as for
 * any libuv handle. Not from inside a callback of this client. */
void orch_http_free(orch_http *c);

/* Starts a request. On success *out (if out != NULL) is the request, owned by
 * the client until on_done returns or orch_http_cancel is called; returns 0
 * or a negative errno (bad options, out of memory). The callbacks are called
 * later, from the loop, never from inside this function. */
int orch_http_request_start(orch_http *c, const orch_http_opts *opts,
                            const orch_http_callbacks *cb, void *ud,
                            orch_http_req **out);

/* Cancels a request: no callback of it runs afterwards and all it holds is
 * released. Fine at any time before on_done returns, from anywhere on the
 * loop's thread, including its own callbacks (on_done: no effect). */
void orch_http_cancel(orch_http_req *req);

/* The number of requests not yet done or cancelled. */
size_t orch_http_active(const orch_http *c);

#endif
