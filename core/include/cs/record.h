/* Recordings of a live stream: fragmented-MP4 segments of a set length in
 * one folder, each SHA-256 hashed into a hash-chained manifest with its
 * retention date.
 *
 * A segment is written as "<name>.mp4.part", synced, renamed to
 * "<name>.mp4" (the folder synced too), and only then appended to
 * "manifest.jsonl" (synced). A recorder killed mid-way leaves every finished
 * segment playable and listed; the unfinished one stays a ".part" file that
 * cs_record_verify() reports and ignores.
 *
 * Each manifest line is one JSON object:
 *   {"seq":N, "file":"...", "bytes":B, "sha256":"<file hash>",
 *    "start":"<ISO 8601 UTC>", "end":"...", "frames":F,
 *    "retain_until":"YYYY-MM-DD", "prev":"<hash of the line before>",
 *    "hash":"<SHA-256 of prev + '\n' + this object without hash, keys sorted, compact>"}
 * The first line's prev is 64 zeros; a restarted recorder continues the
 * chain of the folder's manifest.
 *
 * A cs_record is used by one thread. */
#ifndef CS_RECORD_H
#define CS_RECORD_H

#include <jansson.h>

#include "cs/common.h"
#include "cs/video.h"

typedef struct cs_record cs_record;

typedef struct cs_record_opts {
    size_t size;         /**< sizeof(cs_record_opts) */
    int segment_s;       /**< segment length in seconds; default 60 */
    int retention_years; /**< retain_until = start + this; default 10 (Circular 49 art. 4) */
    int sync;            /**< 1 (default): fsync segments and the manifest */
} cs_record_opts;

#define CS_RECORD_OPTS_INIT                                                                        \
    {                                                                                              \
        sizeof(cs_record_opts), 60, 10, 1                                                          \
    }

/** Record into @p dir (created if missing) the stream of @p enc. */
CS_API int cs_record_open(cs_record **out, const char *dir, const cs_video_enc *enc,
                          const cs_record_opts *o);
/** Add one access unit. A segment starts at a keyframe: packets before the
 *  first keyframe are skipped, and a segment past its length ends at the
 *  next keyframe. @return 0, or CS_EIO (the segment is lost; the next
 *  keyframe starts a new one). */
CS_API int cs_record_write(cs_record *r, cs_vpacket *p);
/** 1 when the recorder is waiting for a keyframe (to start or to cut a
 *  segment): the pipeline may force one. */
CS_API int cs_record_wants_key(const cs_record *r);
/** Finish the current segment and close. @return 0 or CS_EIO. */
CS_API int cs_record_close(cs_record *r);
/** Segments finished so far. */
CS_API int64_t cs_record_segments(const cs_record *r);

/** Check a recording folder: every manifest line's chain link and hash,
 *  every listed file's size and SHA-256, and files that no line lists.
 *  @param report receives {"segments":N, "bytes":B, "problems":[...],
 *  "partial":[...unfinished .part files...], "first":..., "last":...}.
 *  @return the number of problems (0: intact), or a CS_E* code when the
 *  folder or manifest cannot be read. */
CS_API int cs_record_verify(const char *dir, json_t **report);

#endif
