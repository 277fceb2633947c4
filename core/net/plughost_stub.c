/* TEMPORARY: stands in for core/plughost while it is being written, so the
 * server links. Whoever adds the real core/plughost sources to cs_core
 * removes this file and its line in core/CMakeLists.txt. */
#include "cs/err.h"
#include "cs/plughost.h"

int cs_plughost_new(cs_plughost **out, const cs_plughost_opts *opts, const cs_plughost_core *core)
{
    (void)out, (void)opts, (void)core;
    return cs_error_set(CS_EPERM, "the plugin host is not built yet");
}

void cs_plughost_free(cs_plughost *h)
{
    (void)h;
}

int cs_plughost_add_dir(cs_plughost *h, const char *dir)
{
    (void)h, (void)dir;
    return CS_EPERM;
}

int cs_plughost_start(cs_plughost *h)
{
    (void)h;
    return CS_EPERM;
}

void cs_plughost_bus_fn(void *host, cs_event *ev)
{
    (void)host, (void)ev;
}

void cs_plughost_complete(cs_plughost *h, const char *plugin, int64_t req, const json_t *result,
                          const char *error)
{
    (void)h, (void)plugin, (void)req, (void)result, (void)error;
}

int cs_plughost_reload(cs_plughost *h, const char *name)
{
    (void)h, (void)name;
    return CS_EPERM;
}

json_t *cs_plughost_stats(cs_plughost *h)
{
    (void)h;
    return json_array();
}

int cs_plughost_idle(cs_plughost *h, int timeout_ms)
{
    (void)h, (void)timeout_ms;
    return 0;
}

int cs_plughost_check_dir(const char *dir, const char *lib_dir, json_t **report)
{
    (void)dir, (void)lib_dir, (void)report;
    return cs_error_set(CS_EPERM, "the plugin host is not built yet");
}
