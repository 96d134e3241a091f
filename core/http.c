/* http.c - libcurl multi driven by the libuv loop (see http.h).
 *
 * curl says which sockets to watch through CURLMOPT_SOCKETFUNCTION (one
 * uv_poll_t per socket, http_sock) and when to call it back through
 * CURLMOPT_TIMERFUNCTION (one uv_timer_t per client); their callbacks call
 * curl_multi_socket_action and then collect finished transfers.
 *
 * curl forbids adding or removing easy handles from inside its callbacks
 * (the write and header callbacks, where on_chunk and on_headers run), so
 * while curl is on the stack (c->in_curl) a cancel only marks the request and
 * a start only queues it; http_deferred() does the work once curl returns.
 *
 * Each request has its own idle timer; a chunk only records the time, and
 * the timer, when it fires early, re-arms itself for the remainder. */
#include "http.h"

#include "err.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    REQ_QUEUED,    /* started from inside curl, not yet added */
    REQ_ACTIVE,    /* in the multi handle */
    REQ_CANCELLED, /* cancelled from inside curl, removal deferred */
    REQ_DONE       /* on_done is running */
};

typedef struct http_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    orch_http *c;
    struct http_sock *prev, *next;
} http_sock;

struct orch_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t *timer; /* separate allocation, freed by its close callback */
    orch_http_req *reqs;
    http_sock *socks;
    size_t nactive;
    int in_curl;  /* depth of curl_multi_socket_action on the stack */
    int deferred; /* some request waits for http_deferred() */
    int closing;
};

struct orch_http_req {
    orch_http *c;
    CURL *easy;
    struct curl_slist *hdrs;
    char *body;
    uv_timer_t idle; /* the request is freed by this timer's close callback */
    long idle_ms;
    uint64_t last; /* uv_now() of the last byte received */
    orch_http_callbacks cb;
    void *ud;
    int state;
    int added; /* in the multi handle */
    int headers_done;
    long status;
    orch_http_header *h; /* headers of the current response block */
    size_t nh, caph;
    orch_http_req *prev, *next;
    char errbuf[CURL_ERROR_SIZE];
};

/* curl's receive buffer per request, so the largest chunk (curl's default is
 * 16 KiB; against 64 KiB, 1 MiB took about a third less of orch's CPU on
 * bench/sse_throughput.sh's stream: fewer reads, fewer chunks). */
#define HTTP_BUFFER_SIZE (1024L * 1024)

/* ------------------------------------------------------------ helpers */

static void req_clear_headers(orch_http_req *r)
{
    for (size_t i = 0; i < r->nh; i++)
        free((char *)r->h[i].name); /* name and value share one block */
    free(r->h);
    r->h = NULL;
    r->nh = r->caph = 0;
}

static void req_free_cb(uv_handle_t *h)
{
    free(h->data);
}

/* Removes the request from curl and from the client and frees it (the
 * memory itself once its timer is closed). Never with curl on the stack. */
static void req_release(orch_http_req *r)
{
    orch_http *c = r->c;

    if (r->added)
        curl_multi_remove_handle(c->multi, r->easy);
    r->added = 0;
    curl_easy_cleanup(r->easy);
    r->easy = NULL;
    curl_slist_free_all(r->hdrs);
    r->hdrs = NULL;
    free(r->body);
    r->body = NULL;
    req_clear_headers(r);
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    c->nactive--;
    uv_close((uv_handle_t *)&r->idle, req_free_cb);
}

static int http_code(CURLcode cc)
{
    switch (cc) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return -EINVAL;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
        return -EPROTO;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        return -ECONNRESET;
    default:
        return -EIO;
    }
}

static void req_deliver_headers(orch_http_req *r)
{
    r->headers_done = 1;
    if (r->cb.on_headers)
        r->cb.on_headers(r, r->status, r->h, r->nh, r->ud);
    req_clear_headers(r);
}

/* Ends a request that is not cancelled: on_done, then release. */
static void req_finish(orch_http_req *r, int err, const char *msg)
{
    orch_http *c = r->c;

    if (r->added) {
        curl_multi_remove_handle(c->multi, r->easy);
        r->added = 0;
    }
    uv_timer_stop(&r->idle);
    r->state = REQ_DONE;
    if (err == 0 && !r->headers_done && r->status > 0)
        req_deliver_headers(r);
    if (r->cb.on_done)
        r->cb.on_done(r, err, msg, r->status, r->ud);
    req_release(r);
}

/* Work that had to wait until curl was off the stack. */
static void http_deferred(orch_http *c)
{
    orch_http_req *r, *next;

    if (!c->deferred || c->in_curl)
        return;
    c->deferred = 0;
again:
    for (r = c->reqs; r; r = next) {
        next = r->next;
        if (r->state == REQ_CANCELLED) {
            req_release(r);
        } else if (r->state == REQ_QUEUED) {
            CURLMcode mc = curl_multi_add_handle(c->multi, r->easy);
            if (mc != CURLM_OK) {
                /* on_done may change the list: start over. */
                req_finish(r, -EIO, curl_multi_strerror(mc));
                goto again;
            }
            r->added = 1;
            r->state = REQ_ACTIVE;
        }
    }
}

/* Hands finished transfers to on_done. */
static void http_check_done(orch_http *c)
{
    CURLMsg *m;
    int left;

    while (!c->in_curl && (m = curl_multi_info_read(c->multi, &left))) {
        orch_http_req *r;
        char *priv = NULL;
        const char *msg;
        int err;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        if (!priv)
            continue;
        r = (orch_http_req *)(void *)priv;
        if (r->state == REQ_CANCELLED) {
            req_release(r);
            continue;
        }
        err = http_code(m->data.result);
        msg = r->errbuf[0] ? r->errbuf : curl_easy_strerror(m->data.result);
        if (r->status == 0) {
            long st = 0;
            curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &st);
            r->status = st;
        }
        req_finish(r, err, err ? msg : NULL);
    }
}

static void http_drive(orch_http *c, curl_socket_t s, int flags)
{
    int running = 0;

    c->in_curl++;
    curl_multi_socket_action(c->multi, s, flags, &running);
    c->in_curl--;
    http_deferred(c);
    http_check_done(c);
}

/* ------------------------------------------------------------ loop glue */

static void sock_free_cb(uv_handle_t *h)
{
    free(h->data);
}

static void sock_close(orch_http *c, http_sock *hs)
{
    if (hs->prev)
        hs->prev->next = hs->next;
    else
        c->socks = hs->next;
    if (hs->next)
        hs->next->prev = hs->prev;
    uv_close((uv_handle_t *)&hs->poll, sock_free_cb);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    http_sock *hs = h->data;
    int flags = 0;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    http_drive(hs->c, hs->fd, flags);
}

static int socket_fn(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *socketp)
{
    orch_http *c = userp;
    http_sock *hs = socketp;
    int events = 0;

    if (c->closing)
        return 0;
    if (what == CURL_POLL_REMOVE) {
        if (hs) {
            curl_multi_assign(c->multi, s, NULL);
            sock_close(c, hs);
        }
        return 0;
    }
    if (!hs) {
        hs = calloc(1, sizeof *hs);
        if (!hs)
            return -1;
        if (uv_poll_init_socket(c->loop, &hs->poll, s) != 0) {
            free(hs);
            return -1;
        }
        hs->poll.data = hs;
        hs->fd = s;
        hs->c = c;
        hs->next = c->socks;
        if (c->socks)
            c->socks->prev = hs;
        c->socks = hs;
        curl_multi_assign(c->multi, s, hs);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&hs->poll, events, poll_cb);
    return 0;
}

static void timeout_cb(uv_timer_t *t)
{
    http_drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
    orch_http *c = userp;

    if (c->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(c->timer);
    else
        uv_timer_start(c->timer, timeout_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ------------------------------------------------------------ curl callbacks */

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    orch_http_req *r = ud;
    size_t n = size * nmemb;

    if (r->state != REQ_ACTIVE)
        return 0; /* cancelled: abort the transfer */
    r->last = uv_now(r->c->loop);
    if (!r->headers_done)
        req_deliver_headers(r);
    if (r->state == REQ_ACTIVE && r->cb.on_chunk && n)
        r->cb.on_chunk(r, ptr, n, r->ud);
    return r->state == REQ_ACTIVE ? n : 0;
}

static int header_add(orch_http_req *r, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n);
    size_t nn, vn;
    const char *v;
    char *block;

    if (!colon)
        return 0;
    nn = (size_t)(colon - line);
    v = colon + 1;
    vn = n - nn - 1;
    while (vn && (v[0] == ' ' || v[0] == '\t')) {
        v++;
        vn--;
    }
    while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
        vn--;
    if (r->nh == r->caph) {
        size_t cap = r->caph ? r->caph * 2 : 16;
        orch_http_header *nh = realloc(r->h, cap * sizeof *nh);
        if (!nh)
            return -1;
        r->h = nh;
        r->caph = cap;
    }
    block = malloc(nn + vn + 2);
    if (!block)
        return -1;
    for (size_t i = 0; i < nn; i++)
        block[i] = (char)tolower((unsigned char)line[i]);
    block[nn] = '\0';
    memcpy(block + nn + 1, v, vn);
    block[nn + 1 + vn] = '\0';
    r->h[r->nh].name = block;
    r->h[r->nh].value = block + nn + 1;
    r->nh++;
    return 0;
}

static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    orch_http_req *r = ud;
    size_t n = size * nmemb, len = n;

    if (r->state != REQ_ACTIVE)
        return 0;
    r->last = uv_now(r->c->loop);
    if (r->headers_done)
        return n; /* trailers */
    while (len && (ptr[len - 1] == '\n' || ptr[len - 1] == '\r'))
        len--;
    if (len > 5 && memcmp(ptr, "HTTP/", 5) == 0) {
        const char *sp = memchr(ptr, ' ', len);
        long st = 0;
        req_clear_headers(r);
        if (sp)
            for (sp++; sp < ptr + len && *sp >= '0' && *sp <= '9'; sp++)
                st = st * 10 + (*sp - '0');
        r->status = st;
        return n;
    }
    if (len == 0) {
        if (r->status >= 200 || r->status == 0)
            req_deliver_headers(r);
        else
            req_clear_headers(r); /* 1xx: the real response follows */
        return r->state == REQ_ACTIVE ? n : 0;
    }
    if (header_add(r, ptr, len) != 0)
        return 0;
    return n;
}

/* ------------------------------------------------------------ requests */

static void idle_cb(uv_timer_t *t)
{
    orch_http_req *r = t->data;
    uint64_t now = uv_now(r->c->loop);
    uint64_t since = now - r->last;
    char msg[96];

    if (r->state != REQ_ACTIVE)
        return;
    if (since < (uint64_t)r->idle_ms) {
        uv_timer_start(&r->idle, idle_cb, (uint64_t)r->idle_ms - since, 0);
        return;
    }
    snprintf(msg, sizeof msg, "idle timeout: no data for %ld ms", r->idle_ms);
    req_finish(r, -ETIMEDOUT, msg);
}

#define SETOPT(opt, val)                                                      \
    do {                                                                      \
        if (curl_easy_setopt(r->easy, opt, val) != CURLE_OK) {                \
            rc = orch_err_set(-EINVAL, "http: cannot set " #opt);             \
            goto cleanup;                                                     \
        }                                                                     \
    } while (0)

int orch_http_request_start(orch_http *c, const orch_http_opts *o,
                            const orch_http_callbacks *cb, void *ud,
                            orch_http_req **out)
{
    orch_http_req *r = NULL;
    const char *method;
    int rc = 0;

    if (out)
        *out = NULL;
    if (c->closing)
        return orch_err_set(-EINVAL, "http: client is closed");
    if (!o || !o->url || !o->url[0])
        return orch_err_set(-EINVAL, "http: no url");
    if (o->connect_timeout_ms < 0 || o->idle_timeout_ms < 0 ||
        o->timeout_ms < 0)
        return orch_err_set(-EINVAL, "http: negative timeout");
    r = calloc(1, sizeof *r);
    if (!r)
        return orch_err_set(-ENOMEM, "http: out of memory");
    r->c = c;
    r->ud = ud;
    if (cb)
        r->cb = *cb;
    r->idle_ms = o->idle_timeout_ms;
    r->easy = curl_easy_init();
    if (!r->easy) {
        rc = orch_err_set(-ENOMEM, "http: curl_easy_init failed");
        goto cleanup;
    }
    SETOPT(CURLOPT_URL, o->url);
    SETOPT(CURLOPT_PRIVATE, (char *)r);
    SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
    SETOPT(CURLOPT_WRITEDATA, r);
    SETOPT(CURLOPT_HEADERFUNCTION, header_cb);
    SETOPT(CURLOPT_HEADERDATA, r);
    SETOPT(CURLOPT_ERRORBUFFER, r->errbuf);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_ACCEPT_ENCODING, "");
    SETOPT(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    /* A large receive buffer: a fast stream is read in few recv calls and
     * handed on in few chunks (its pages are touched only as far as a read
     * fills them; a slow stream's reads stay small). */
    SETOPT(CURLOPT_BUFFERSIZE, HTTP_BUFFER_SIZE);
    if (o->connect_timeout_ms)
        SETOPT(CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    if (o->timeout_ms)
        SETOPT(CURLOPT_TIMEOUT_MS, o->timeout_ms);
    for (size_t i = 0; i < o->nheaders; i++) {
        struct curl_slist *l = curl_slist_append(r->hdrs, o->headers[i]);
        if (!l) {
            rc = orch_err_set(-ENOMEM, "http: out of memory");
            goto cleanup;
        }
        r->hdrs = l;
    }
    if (r->hdrs)
        SETOPT(CURLOPT_HTTPHEADER, r->hdrs);
    method = o->method && o->method[0] ? o->method : (o->body ? "POST" : "GET");
    if (o->body || strcmp(method, "POST") == 0) {
        r->body = malloc(o->body_len ? o->body_len : 1);
        if (!r->body) {
            rc = orch_err_set(-ENOMEM, "http: out of memory");
            goto cleanup;
        }
        if (o->body_len)
            memcpy(r->body, o->body, o->body_len);
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        SETOPT(CURLOPT_POSTFIELDS, r->body);
    }
    if (strcmp(method, "HEAD") == 0)
        SETOPT(CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        SETOPT(CURLOPT_CUSTOMREQUEST, method);
    else if (strcmp(method, "GET") == 0 && o->body)
        SETOPT(CURLOPT_CUSTOMREQUEST, "GET");

    /* From here on nothing fails but the add, which is handled by finish. */
    uv_timer_init(c->loop, &r->idle);
    r->idle.data = r;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    c->nactive++;
    r->last = uv_now(c->loop);
    if (r->idle_ms > 0)
        uv_timer_start(&r->idle, idle_cb, (uint64_t)r->idle_ms, 0);
    if (c->in_curl) {
        r->state = REQ_QUEUED;
        c->deferred = 1;
    } else {
        CURLMcode mc = curl_multi_add_handle(c->multi, r->easy);
        if (mc != CURLM_OK) {
            rc = orch_err_set(-EIO, "http: %s", curl_multi_strerror(mc));
            r->state = REQ_CANCELLED;
            req_release(r);
            return rc;
        }
        r->added = 1;
        r->state = REQ_ACTIVE;
    }
    if (out)
        *out = r;
    return 0;

cleanup:
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    free(r->body);
    free(r);
    return rc;
}

void orch_http_cancel(orch_http_req *r)
{
    orch_http *c;

    if (!r || r->state == REQ_DONE || r->state == REQ_CANCELLED)
        return;
    c = r->c;
    uv_timer_stop(&r->idle);
    if (c->in_curl) {
        r->state = REQ_CANCELLED;
        c->deferred = 1;
        return;
    }
    r->state = REQ_CANCELLED;
    req_release(r);
}

size_t orch_http_active(const orch_http *c)
{
    return c->nactive;
}

/* ------------------------------------------------------------ client */

static void client_timer_free_cb(uv_handle_t *h)
{
    free(h);
}

orch_http *orch_http_new(uv_loop_t *loop)
{
    orch_http *c = NULL;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        orch_err_set(-EIO, "http: curl_global_init failed");
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (!c)
        goto fail;
    c->loop = loop;
    c->timer = malloc(sizeof *c->timer);
    c->multi = curl_multi_init();
    if (!c->timer || !c->multi)
        goto fail;
    uv_timer_init(loop, c->timer);
    c->timer->data = c;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_fn);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return c;

fail:
    if (c) {
        if (c->multi)
            curl_multi_cleanup(c->multi);
        free(c->timer);
        free(c);
    }
    curl_global_cleanup();
    orch_err_set(-ENOMEM, "http: out of memory");
    return NULL;
}

void orch_http_free(orch_http *c)
{
    if (!c)
        return;
    while (c->reqs) {
        c->reqs->state = REQ_CANCELLED;
        req_release(c->reqs);
    }
    /* Stop watching the sockets while their fds are still open, then let
     * curl close its connections without calling back into us. */
    c->closing = 1;
    while (c->socks) {
        curl_multi_assign(c->multi, c->socks->fd, NULL);
        sock_close(c, c->socks);
    }
    uv_close((uv_handle_t *)c->timer, client_timer_free_cb);
    curl_multi_cleanup(c->multi);
    free(c);
    curl_global_cleanup();
}
