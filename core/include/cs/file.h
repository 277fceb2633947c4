/* Durable files: the one piece every "on disk before acknowledged" path
 * shares. Thread-safe. */
#ifndef CS_FILE_H
#define CS_FILE_H

#include "cs/common.h"

/** Sync @p path to disk: fdatasync for a file, fsync for a folder (what
 *  makes a rename or a new entry in it durable). @return 0 or CS_EIO with
 *  a message naming the path. */
CS_API int cs_file_sync(const char *path, int is_dir);

#endif
