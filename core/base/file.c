/* core/base: durable files (cs/file.h). */
#include "cs/file.h"

#include <errno.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fcntl.h>

#include "cs/err.h"

#define EXT4_MAGIC  0xEF53ul /* also ext2/ext3, served by the ext4 driver on Debian */
#define XFS_MAGIC   0x58465342ul
#define BTRFS_MAGIC 0x9123683Eul

int cs_file_sync(const char *path, int kind)
{
    int dir = kind == CS_FILE_SYNC_DIR;
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return cs_error_set(CS_EIO, "open %s: %s", path, strerror(errno));
    int r = kind == CS_FILE_SYNC_DATA ? fdatasync(fd) : fsync(fd);
    int e = errno;
    close(fd);
    return r ? cs_error_set(CS_EIO, "fsync %s: %s", path, strerror(e)) : 0;
}

int cs_file_names_durable(const char *path)
{
    struct statfs s;
    if (statfs(path, &s) != 0)
        return 0;
    unsigned long t = (unsigned long)s.f_type & 0xFFFFFFFFul;
    return t == EXT4_MAGIC || t == XFS_MAGIC || t == BTRFS_MAGIC;
}
