/* The DICOM node: C-ECHO/C-STORE/C-FIND SCP over the study store, and the
 * auto-forwarder that sends what arrives to a consulting site's node.
 *
 * Threads: opts.max_associations "dimse-assoc" threads, each accepting an
 * association (handshake included, so a silent peer holds only its own
 * thread) and serving it to the end; two forwarders ("dimse-fwd"), each
 * claiming queued rows in small batches and sending them on its own
 * association, so a link's round trips overlap. Each thread opens its own
 * database handle on the shared file.
 *
 * The store: <store>/<study_uid>/<series_uid>/<sop_uid>.dcm, received into
 * <store>/.tmp under a temporary name, fdatasync'd, renamed into place, the
 * directory fsync'd (and its parents when they were created: POSIX makes a
 * rename durable only with its directory's fsync), then indexed
 * (dicom_studies/series/instances, the forward queue and the ATNA record
 * 110104) in one transaction, and only then acknowledged. The files are the
 * truth and the index is derived from them: the transaction is committed
 * with synchronous=NORMAL (WAL), durable against a crash of the process but
 * not of the machine, so an acknowledged instance is on disk, and after a
 * power cut its index rows may be missing. cs_dimse_new() reconciles: it
 * walks <store>/<study>/<series>/<sop>.dcm and indexes each file without a row
 * (or with a row of another size: a replacement whose commit was lost),
 * queues its forwards (routes from "*" only: the file does not say which AE
 * sent it, so the AE-specific routes do not apply; a peer may receive an
 * instance twice, which it acknowledges as a duplicate) and writes ATNA
 * 110104 "DICOM instance re-indexed from the store" (user: our AE title).
 * A file that does not parse, or whose UIDs do not match its place, is
 * skipped and logged; <store>/.tmp is emptied.
 *
 * A dataset that does not arrive whole or does not parse is never renamed
 * or indexed. A duplicate SOP instance with identical bytes (same SHA-256)
 * is acknowledged and not stored again; a different one replaces the stored
 * file and its index row (the sender corrected it).
 *
 * Config file (JSON, every key optional; command-line options win):
 *   {"aet": "CONSILIUM", "dicom_port": 11112, "store": "/path",
 *    "peers": {"NAME": "AET@HOST:PORT"},
 *    "routes": [{"from_aet": "*", "to": "NAME", "transfer_syntax": "jpeg-ls-lossless"}],
 *    "fsync": true, "timeout_s": 30}
 * A route forwards every instance received from a matching calling AE title
 * (never back to the AE that sent it) to the peer, transcoded to the syntax
 * (DCMTK's codecs for now; "keep" sends as stored). Undelivered instances
 * stay queued in the database and are retried with back-off (1 s doubling
 * up to 60 s) while the peer is down, across restarts. */
#ifndef CS_DIMSE_H
#define CS_DIMSE_H

#include <stddef.h>

#include "cs/common.h"
#include "cs/dicomnet.h"

typedef struct cs_dimse cs_dimse;

typedef struct cs_dimse_opts {
    size_t size;
    const char *aet;         /**< our AE title (default: config, else "CONSILIUM") */
    int port;                /**< DICOM port (default: config, else 11112; 0: any free) */
    const char *store;       /**< the study store folder (default: config) */
    const char *db_path;     /**< the database (shared with the HTTP server) */
    const char *config_path; /**< JSON config above; NULL: none */
    int max_associations;    /**< concurrent associations (default 16) */
    int timeout_s;           /**< DIMSE timeout (default 30) */
    /** 1 (default): a C-STORE is acknowledged once the file is on disk
     *  (fdatasync, rename, directory fsync) and the index committed
     *  (synchronous=NORMAL: rebuilt from the files at start, see above).
     *  0 (config "fsync": false): written and committed but not synced
     *  before the answer, as Orthanc and most PACS do: an acknowledged
     *  instance can be lost to a power cut (never half-indexed: the file
     *  is still renamed before its row is committed). -1: the config's. */
    int fsync;
} cs_dimse_opts;
#define CS_DIMSE_OPTS_INIT                                                                         \
    {                                                                                              \
        sizeof(cs_dimse_opts), NULL, -1, NULL, NULL, NULL, 16, 30, -1                              \
    }

/** Read the config, open the database (migrating it), make the store and
 *  bind the port. @return 0, CS_EINVAL (bad config, named), CS_EIO. */
CS_API int cs_dimse_new(cs_dimse **out, const cs_dimse_opts *opts);
/** Start the accept loop and the forwarder. */
CS_API int cs_dimse_start(cs_dimse *n);
/** Call @p fn with the store file's path and its transfer syntax UID each
 *  time an instance is stored (new or replacing; not for a duplicate),
 *  after it is indexed, on the association's thread: @p fn must not block.
 *  Set before cs_dimse_start(). */
CS_API void cs_dimse_on_stored(cs_dimse *n,
                               void (*fn)(void *userdata, const char *path, const char *ts),
                               void *userdata);
/** The bound port, our AE title, the store folder (borrowed). */
CS_API int cs_dimse_port(const cs_dimse *n);
CS_API const char *cs_dimse_aet(const cs_dimse *n);
CS_API const char *cs_dimse_store(const cs_dimse *n);
/** Stop accepting, wait for the associations and the forwarder, free.
 *  NULL is a no-op. */
CS_API void cs_dimse_free(cs_dimse *n);

/** C-STORE @p path on @p a in @p want_ts (NULL: as stored) when the peer
 *  accepted it, else as stored, else uncompressed. A re-encoding (JPEG-LS,
 *  JPEG baseline, uncompressed) is made with cs_dicom_transcode() into a
 *  temporary file under @p tmp_dir, removed after. @p sent_ts (65 bytes, may
 *  be NULL) receives the syntax sent. @return as cs_dicomnet_store_file(). */
CS_API int cs_dimse_send_file(cs_dicomnet_assoc *a, const char *path, const char *want_ts,
                              const char *tmp_dir, int *status, char *sent_ts);

/** The transfer syntax UID for a short name ("explicit", "implicit",
 *  "deflate", "rle", "jpeg-baseline", "jpeg-extended", "jpeg-lossless",
 *  "jpeg-ls", "jpeg-ls-lossless", "jpeg-ls-near", "j2k", "j2k-lossless",
 *  "htj2k", "htj2k-lossless") or a UID given as is; NULL when unknown.
 *  "keep" gives "". Thread-safe. */
CS_API const char *cs_dimse_ts_from_name(const char *name);

#endif
