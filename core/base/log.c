/* Named loggers writing whole lines with one write(2).
 *
 * The level of a logger is read once from CS_LOG when it is created; nothing
 * global is kept. A line is formatted into a stack buffer and written with a
 * single write() so lines never interleave and real-time threads never take
 * the stdio lock. */
#include "cs/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cs/err.h"

struct cs_logger {
    char name[48];
    cs_log_level level;
};

static const char *const level_names[] = {"fatal", "error", "warn", "info", "v", "debug", "trace"};

static int parse_level(const char *s, size_t n)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++) {
        if (strlen(level_names[i]) == n && strncmp(level_names[i], s, n) == 0)
            return i;
    }
    return -1;
}

/* CS_LOG="info,net=debug": a bare level is the default, name=level overrides. */
static cs_log_level level_from_env(const char *name)
{
    cs_log_level lv = CS_LOG_INFO;
    const char *env = getenv("CS_LOG");
    if (!env)
        return lv;
    size_t nlen = strlen(name);
    const char *p = env;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq) {
            int l = parse_level(p, len);
            if (l >= 0)
                lv = (cs_log_level)l;
        } else if ((size_t)(eq - p) == nlen && strncmp(p, name, nlen) == 0) {
            int l = parse_level(eq + 1, len - (size_t)(eq - p) - 1);
            if (l >= 0)
                return (cs_log_level)l;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return lv;
}

int cs_log_new(cs_logger **out, const char *name)
{
    cs_logger *log = calloc(1, sizeof(*log));
    if (!log)
        return cs_error_set(CS_ENOMEM, "out of memory creating logger");
    snprintf(log->name, sizeof(log->name), "%s", name ? name : "cs");
    log->level = level_from_env(log->name);
    *out = log;
    return 0;
}

void cs_log_free(cs_logger *log)
{
    free(log);
}

void cs_log_set_level(cs_logger *log, cs_log_level level)
{
    log->level = level;
}

int cs_log_enabled(const cs_logger *log, cs_log_level level)
{
    return level <= (log ? log->level : CS_LOG_INFO);
}

void cs_log(const cs_logger *log, cs_log_level level, const char *fmt, ...)
{
    if (!cs_log_enabled(log, level))
        return;
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld [%s] %s: ", tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, log ? log->name : "cs", level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
