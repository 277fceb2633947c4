/* Error codes and the thread-local error message.
 *
 * Functions return int: 0 on success, a negative CS_E* code on failure. The
 * function that detects an error writes a message with cs_error_set(); callers
 * only propagate the code. cs_error_last() reads the calling thread's message.
 * All functions here are thread-safe. */
#ifndef CS_ERR_H
#define CS_ERR_H

#include "cs/common.h"

enum {
    CS_OK = 0,
    CS_ENOMEM = -1,     /**< out of memory */
    CS_EINVAL = -2,     /**< invalid argument or malformed request */
    CS_EIO = -3,        /**< read/write failure */
    CS_ENOTFOUND = -4,  /**< no such file, slide, tile or key */
    CS_EFORMAT = -5,    /**< data is not in a format we can read, or corrupt */
    CS_ETIMEDOUT = -6,  /**< a deadline passed */
    CS_EAGAIN = -7,     /**< try again later (queue full, drain output first) */
    CS_EOF = -8,        /**< end of stream */
    CS_ERANGE = -9,     /**< value out of range (level, tile, region) */
    CS_ETOOBIG = -10,   /**< request larger than the configured maximum */
    CS_EPERM = -11,     /**< not allowed by configuration or role */
    CS_EGONE = -12,     /**< the resource existed but was removed */
    CS_ECLOSED = -13,   /**< object was closed or shut down */
    CS_ECONFLICT = -14, /**< an edit against a stale revision */
};

/** Set the calling thread's error message and return @p code (so that
 *  `return cs_error_set(CS_EIO, "...")` reads naturally). @since 0.1 */
CS_API int cs_error_set(int code, const char *fmt, ...) CS_PRINTF(2, 3);

/** The calling thread's last message; never NULL ("" when none). Valid until
 *  the next cs_error_set() on this thread. @since 0.1 */
CS_API const char *cs_error_last(void);

/** Clear the calling thread's message. @since 0.1 */
CS_API void cs_error_clear(void);

/** Static text for an error code. @since 0.1 */
CS_API const char *cs_strerror(int code);

#endif
