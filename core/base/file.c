/* core/base: durable files (cs/file.h). */
#include "cs/file.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <fcntl.h>

#include "cs/err.h"

int cs_file_sync(const char *path, int is_dir)
{
    int fd = open(path, (is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return cs_error_set(CS_EIO, "open %s: %s", path, strerror(errno));
    int r = is_dir ? fsync(fd) : fdatasync(fd);
    int e = errno;
    close(fd);
    return r ? cs_error_set(CS_EIO, "fsync %s: %s", path, strerror(e)) : 0;
}
