/* err.c - thread-local error messages for the core (see err.h). */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char orch_err_buf[1024];

int orch_err_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(orch_err_buf, sizeof orch_err_buf, fmt, ap);
    va_end(ap);
    return code;
}

const char *orch_err_msg(void)
{
    return orch_err_buf;
}

void orch_err_clear(void)
{
    orch_err_buf[0] = '\0';
}
