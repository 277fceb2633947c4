/* Named loggers.
 *
 * A cs_logger carries a name ("tiles", "net", "lua/minutes") and a level. Each
 * message becomes one line written with a single write(2) to the sink fd
 * (stderr by default), so lines from many threads never interleave and no
 * stdio lock is taken. The level for a name comes from the environment
 * variable CS_LOG, e.g. "CS_LOG=info,net=debug". Thread-safe. */
#ifndef CS_LOG_H
#define CS_LOG_H

#include "cs/common.h"

typedef enum {
    CS_LOG_FATAL = 0,
    CS_LOG_ERROR,
    CS_LOG_WARN,
    CS_LOG_INFO,
    CS_LOG_VERBOSE,
    CS_LOG_DEBUG,
    CS_LOG_TRACE,
} cs_log_level;

typedef struct cs_logger cs_logger;

/** Create a logger. @param out receives a handle freed with cs_log_free().
 *  @return 0 or CS_ENOMEM. @since 0.1 */
CS_API int cs_log_new(cs_logger **out, const char *name);
CS_API void cs_log_free(cs_logger *log);

/** Change the level (messages above it are dropped). */
CS_API void cs_log_set_level(cs_logger *log, cs_log_level level);
CS_API int cs_log_enabled(const cs_logger *log, cs_log_level level);

/** Write one line. A NULL @p log is allowed and logs under "cs". */
CS_API void cs_log(const cs_logger *log, cs_log_level level, const char *fmt, ...) CS_PRINTF(3, 4);

#endif
