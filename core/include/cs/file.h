/* Durable files: the one piece every "on disk before acknowledged" path
 * shares. Thread-safe. */
#ifndef CS_FILE_H
#define CS_FILE_H

#include "cs/common.h"

/** What cs_file_sync() makes durable. */
enum {
    CS_FILE_SYNC_DATA = 0, /**< a file's bytes and size (fdatasync) */
    CS_FILE_SYNC_DIR = 1,  /**< a folder: a rename into it or a new entry (fsync) */
    CS_FILE_SYNC_FULL = 2  /**< a file's bytes and all its metadata (fsync) */
};

/** Sync @p path to disk as @p kind says (CS_FILE_SYNC_*). @return 0 or
 *  CS_EIO with a message naming the path. */
CS_API int cs_file_sync(const char *path, int kind);

/** Whether the filesystem holding @p path makes a file's latest name
 *  durable when the file itself is fsync'd (CS_FILE_SYNC_FULL) after a
 *  rename: ext4 (with a journal the fsync commits the rename's transaction;
 *  without one it syncs a new entry's parent folder), XFS (the rename is
 *  logged with the inode) and Btrfs (the log tree records the new name).
 *  Elsewhere, and when in doubt, the folder must be synced as well.
 *  @return 1 or 0. */
CS_API int cs_file_names_durable(const char *path);

#endif
