/* Thread-local error messages. */
#include "cs/err.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_msg[512];

int cs_error_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
    va_end(ap);
    return code;
}

const char *cs_error_last(void)
{
    return last_msg;
}

void cs_error_clear(void)
{
    last_msg[0] = '\0';
}

const char *cs_strerror(int code)
{
    switch (code) {
    case CS_OK:
        return "success";
    case CS_ENOMEM:
        return "out of memory";
    case CS_EINVAL:
        return "invalid argument";
    case CS_EIO:
        return "input/output error";
    case CS_ENOTFOUND:
        return "not found";
    case CS_EFORMAT:
        return "unsupported or corrupt format";
    case CS_ETIMEDOUT:
        return "timed out";
    case CS_EAGAIN:
        return "try again";
    case CS_EOF:
        return "end of stream";
    case CS_ERANGE:
        return "out of range";
    case CS_ETOOBIG:
        return "too large";
    case CS_EPERM:
        return "not permitted";
    case CS_EGONE:
        return "gone";
    case CS_ECLOSED:
        return "closed";
    case CS_ECONFLICT:
        return "conflict with a newer revision";
    }
    return "unknown error";
}
