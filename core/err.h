/* err.h - the one error convention of orch's C core.
 *
 * Every core function that can fail returns 0 (or a non-negative value) on
 * success and a negative errno on failure, after recording a human-readable
 * message with orch_err_set(). The message lives in a thread-local buffer
 * until the next orch_err_set() on the same thread; callers that want to keep
 * it copy it. */
#ifndef ORCH_ERR_H
#define ORCH_ERR_H

#include <stddef.h>

#if defined(__GNUC__)
#define ORCH_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define ORCH_PRINTF(a, b)
#endif

/* Records a message and returns `code` (a negative errno), so that error
 * paths read `rc = orch_err_set(-EINVAL, "bad %s", what); goto cleanup;`. */
int orch_err_set(int code, const char *fmt, ...) ORCH_PRINTF(2, 3);

/* The last message recorded on this thread ("" if none). */
const char *orch_err_msg(void);

/* Clears the message. */
void orch_err_clear(void);

#endif
