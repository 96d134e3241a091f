/* tcp.h - TCP sockets on the libuv loop: a listener (port 0 = a free port
 * chosen by the system), accepted and outgoing connections carrying bytes.
 *
 * Written for the scripted model server (lua/orch/testing/), which parses
 * HTTP in Lua on top of it, and for tests that need a raw client.
 *
 * Buffers are bounded: a read delivers at most ORCH_TCP_READ_CHUNK bytes at a
 * time from one buffer per connection, and a connection refuses a write with
 * -ENOBUFS while more than ORCH_TCP_MAX_QUEUED bytes wait to go out (a peer
 * that does not read cannot make orch grow without end).
 *
 * Lifetime: a connection is owned by the module until its owner calls
 * orch_tcp_close() or orch_tcp_abort(); callbacks stop then, and it is freed
 * once its handle is closed. on_close tells the owner the peer is gone (end
 * of stream or an error); the owner still calls orch_tcp_close(). */
#ifndef ORCH_TCP_H
#define ORCH_TCP_H

#include <stddef.h>
#include <uv.h>

#define ORCH_TCP_READ_CHUNK ((size_t)64 * 1024)
#define ORCH_TCP_MAX_QUEUED ((size_t)64 * 1024 * 1024)

typedef struct orch_tcp_server orch_tcp_server;
typedef struct orch_tcp_conn orch_tcp_conn;

typedef struct orch_tcp_conn_cb {
    /* bytes as they arrive (valid during the call only) */
    void (*on_data)(orch_tcp_conn *c, const char *data, size_t len, void *ud);
    /* status 0 at end of stream, a negative errno on a read error */
    void (*on_close)(orch_tcp_conn *c, int status, void *ud);
} orch_tcp_conn_cb;

/* A new connection: the callee must call orch_tcp_conn_start() (now or
 * later) or orch_tcp_close(). */
typedef void (*orch_tcp_accept_fn)(orch_tcp_server *s, orch_tcp_conn *c,
                                   void *ud);

/* Listens on host (an IPv4 or IPv6 literal; NULL = 127.0.0.1) and port
 * (0 = a free one, see orch_tcp_server_port). -EINVAL for a bad address,
 * -EADDRINUSE, ... with a message. */
int orch_tcp_listen(uv_loop_t *loop, const char *host, int port,
                    orch_tcp_accept_fn fn, void *ud, orch_tcp_server **out);
/* The port actually bound. */
int orch_tcp_server_port(const orch_tcp_server *s);

/* A TCP port of host (an IPv4 address) that is free now: bound with port 0,
 * read back and released at once (no handle, no listen). Returns the port
 * or a negative errno (message in orch_err_msg()). */
int orch_tcp_free_port(const char *host);
/* Stops listening and frees the server (connections stay with their
 * owners). */
void orch_tcp_server_close(orch_tcp_server *s);

/* Connects to host:port; fn runs once with status 0 (c usable) or a
 * negative errno (c already released: do not touch it). The connection
 * handed back at once may be closed before fn runs (fn then never runs). */
typedef void (*orch_tcp_connect_fn)(orch_tcp_conn *c, int status, void *ud);
int orch_tcp_connect(uv_loop_t *loop, const char *host, int port,
                     orch_tcp_connect_fn fn, void *ud, orch_tcp_conn **out);

/* Starts reading (again, after a pause). -EPIPE once the peer is gone. */
int orch_tcp_conn_start(orch_tcp_conn *c, const orch_tcp_conn_cb *cb,
                        void *ud);
/* Stops reading; writes still go out. */
void orch_tcp_pause(orch_tcp_conn *c);
/* Queues bytes (copied). -EPIPE once closed, -ENOBUFS over the bound. */
int orch_tcp_write(orch_tcp_conn *c, const char *data, size_t len);
/* Bytes queued and not yet written. */
size_t orch_tcp_queued(const orch_tcp_conn *c);
/* The owner lets go: flushes queued writes, sends FIN, closes, frees. */
void orch_tcp_close(orch_tcp_conn *c);
/* The owner lets go at once: queued writes are dropped and the peer sees a
 * reset (RST), as when a server dies mid-response. */
void orch_tcp_abort(orch_tcp_conn *c);

#endif
