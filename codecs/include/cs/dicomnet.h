/* DICOM network associations (DIMSE over DCMTK's dcmnet), behind C.
 *
 * Blocking calls only: this codec has no threads. The caller (core/dimse)
 * runs an accept loop on a cs_dicomnet_listener and one thread per accepted
 * association calling cs_dicomnet_serve(); the SCU side associates, sends
 * and disassociates on the calling thread.
 *
 * Peers are written AET@HOST:PORT everywhere (cs_dicomnet_peer_parse()).
 *
 * DCMTK leaves Nagle's algorithm on unless the environment says
 * TCP_NODELAY=1; the first call of this module sets that variable (if unset)
 * because each image would otherwise wait ~40 ms for a delayed ACK.
 *
 * The implementation is C++ (dicomnet_shim.cpp): every C++ exception is
 * caught at this boundary and becomes a CS_E* code with a message.
 *
 * Thread-safety: cs_dicomnet_accept() may be called from several threads
 * on one listener (each gets its own association, handshake included); an
 * association by one thread at a time; different associations may be used
 * from different threads at once. Functions without a handle are
 * thread-safe. */
#ifndef CS_DICOMNET_H
#define CS_DICOMNET_H

#include <stddef.h>
#include <stdint.h>

#include "cs/common.h"

typedef struct cs_dicomnet_listener cs_dicomnet_listener;
typedef struct cs_dicomnet_assoc cs_dicomnet_assoc;

/** DIMSE status codes used by callers. */
#define CS_DICOMNET_SUCCESS           0x0000
#define CS_DICOMNET_PENDING           0xFF00
#define CS_DICOMNET_OUT_OF_RESOURCES  0xA700 /**< C-STORE: could not store */
#define CS_DICOMNET_DATASET_MISMATCH  0xA900 /**< C-STORE: dataset/SOP class mismatch */
#define CS_DICOMNET_CANNOT_UNDERSTAND 0xC000 /**< C-STORE: cannot parse the dataset */
#define CS_DICOMNET_FIND_UNABLE       0xC001 /**< C-FIND: unable to process */
#define CS_DICOMNET_FIND_BAD_KEYS     0xA900 /**< C-FIND: identifier does not match class */

/** A peer: AE title, host and port. */
typedef struct cs_dicomnet_peer {
    char aet[17];
    char host[256];
    int port;
} cs_dicomnet_peer;

/** Parse "AET@HOST:PORT" (AE title 1-16 characters, no backslash or
 *  control characters; port 1-65535). @return 0 or CS_EINVAL. */
CS_API int cs_dicomnet_peer_parse(cs_dicomnet_peer *out, const char *text);

/** One attribute as text: @p tag is (group << 16) | element, @p value the
 *  DICOM string form (multiple values joined by backslashes; "" for an
 *  empty/universal key). Used for C-FIND keys and results. */
typedef struct cs_dicomnet_attr {
    uint32_t tag;
    const char *value;
} cs_dicomnet_attr;

/* ---------------------------------------------------------------- SCP */

typedef struct cs_dicomnet_listen_opts {
    size_t size;
    int port;         /**< TCP port (all interfaces, as DCMTK binds) */
    const char *aet;  /**< our AE title; associations called otherwise are rejected */
    int timeout_s;    /**< DIMSE/ACSE timeout: idle or stalled peers are dropped (default 30) */
    uint32_t max_pdu; /**< largest PDU we receive (default 116794, as DCMTK's tools) */
    int any_called;   /**< accept any called AE title */
} cs_dicomnet_listen_opts;
#define CS_DICOMNET_LISTEN_OPTS_INIT                                                               \
    {                                                                                              \
        sizeof(cs_dicomnet_listen_opts), 104, "CONSILIUM", 30, 0, 0                                \
    }

/** Open the listening socket. @return 0, CS_EIO (port taken...). */
CS_API int cs_dicomnet_listen(cs_dicomnet_listener **out, const cs_dicomnet_listen_opts *opts);
/** The port actually bound. */
CS_API int cs_dicomnet_listener_port(const cs_dicomnet_listener *l);
/** Close the socket and free. NULL is a no-op. */
CS_API void cs_dicomnet_listener_free(cs_dicomnet_listener *l);

/** Wait up to @p timeout_ms for a peer and negotiate its association:
 *  Verification, every storage SOP class (uncompressed, deflate, RLE,
 *  JPEG, JPEG-LS, JPEG 2000; the sender's choice is kept; not HTJ2K, which
 *  DCMTK 3.6.7's DIMSE layer refuses) and Study/Patient Root C-FIND.
 *  @return 0 with @p *out set; CS_ETIMEDOUT when nobody came; CS_EFORMAT
 *  when the peer was refused or broke the handshake (message says why;
 *  keep accepting); CS_EIO for a listener failure. */
CS_API int cs_dicomnet_accept(cs_dicomnet_listener *l, cs_dicomnet_assoc **out, int timeout_ms);

/** What a received instance says (strings NUL-terminated, "" when absent). */
typedef struct cs_dicomnet_instance {
    const char *path; /**< the received Part 10 file (in the temp dir) */
    int64_t size;     /**< its size in bytes */
    char sha256[65];  /**< hex digest of the file */
    char calling_aet[17];
    char sop_class[65], sop_uid[65], study_uid[65], series_uid[65];
    char transfer_syntax[65];
    char patient_id[65], patient_name[325], patient_birth_date[17], patient_sex[17];
    char study_date[17], study_time[33], accession[17], study_id[17], study_desc[65];
    char referring[325], modality[17], series_desc[65], body_part[17];
    int series_number, instance_number; /**< -1 when absent */
    int rows, cols, frames;
} cs_dicomnet_instance;

/** A C-FIND match: the handler passes every attribute it knows; the shim
 *  answers those the query asked for. @return 0, or nonzero to stop (the
 *  peer cancelled or went away). */
typedef int (*cs_dicomnet_emit_fn)(void *ctx, const cs_dicomnet_attr *attrs, int n);

typedef struct cs_dicomnet_handlers {
    size_t size;
    /** Received files are written here under temporary names, then given
     *  to @p store; the file is removed after @p store returns unless it
     *  renamed it away. */
    const char *tmp_dir;
    /** Store one instance. @return a DIMSE status (CS_DICOMNET_SUCCESS...). */
    int (*store)(const cs_dicomnet_instance *inst, void *userdata);
    /** Answer a C-FIND at @p level ("PATIENT", "STUDY", "SERIES", "IMAGE")
     *  with the query keys @p keys (value "" = return this attribute).
     *  @return a DIMSE status (CS_DICOMNET_SUCCESS when all matches are out). */
    int (*find)(const char *level, const cs_dicomnet_attr *keys, int nkeys,
                cs_dicomnet_emit_fn emit, void *ctx, const char *calling_aet, void *userdata);
    void *userdata;
} cs_dicomnet_handlers;

/** Receive and dispatch messages until the peer releases (0) or aborts,
 *  stalls past the timeout or breaks the protocol (CS_EIO / CS_EFORMAT /
 *  CS_ETIMEDOUT with the reason). A received dataset that does not parse is
 *  answered 0xC000 and never reaches @p h->store. */
CS_API int cs_dicomnet_serve(cs_dicomnet_assoc *a, const cs_dicomnet_handlers *h);

/** The peer's AE title and address (borrowed for the association's life). */
CS_API const char *cs_dicomnet_assoc_calling_aet(const cs_dicomnet_assoc *a);
CS_API const char *cs_dicomnet_assoc_peer_host(const cs_dicomnet_assoc *a);

/** Release (SCU) or drop (SCP) the association and free it. NULL is a no-op. */
CS_API void cs_dicomnet_assoc_free(cs_dicomnet_assoc *a);

/* ---------------------------------------------------------------- SCU */

/** What an association proposes. */
typedef struct cs_dicomnet_connect_opts {
    size_t size;
    const char *calling_aet; /**< our AE title */
    int timeout_s;           /**< connect and DIMSE timeout (default 30) */
    /** Storage: SOP classes to propose (NULL with 0: none). */
    const char *const *sop_classes;
    int nsop_classes;
    /** Transfer syntaxes proposed for each storage class, in order, each in
     *  its own presentation context; the uncompressed ones (explicit and
     *  implicit little endian) are always added as a fallback context.
     *  NULL/0: uncompressed only. */
    const char *const *transfer_syntaxes;
    int ntransfer_syntaxes;
    int verification; /**< propose Verification */
    int find;         /**< propose Study Root C-FIND */
    int move;         /**< propose Study Root C-MOVE */
} cs_dicomnet_connect_opts;
#define CS_DICOMNET_CONNECT_OPTS_INIT                                                              \
    {                                                                                              \
        sizeof(cs_dicomnet_connect_opts), "CONSILIUM", 30, NULL, 0, NULL, 0, 1, 0, 0               \
    }

/** Associate with @p peer. @return 0, CS_EIO (cannot connect; the peer is
 *  down), CS_EPERM (association rejected, message has the reason),
 *  CS_ETIMEDOUT. */
CS_API int cs_dicomnet_connect(cs_dicomnet_assoc **out, const cs_dicomnet_peer *peer,
                               const cs_dicomnet_connect_opts *opts);

/** C-ECHO. @return 0 with the DIMSE status in @p status, or CS_EIO... */
CS_API int cs_dicomnet_echo(cs_dicomnet_assoc *a, int *status);

/** Whether DCMTK (3.6.7) can send data in syntax @p ts as it is (false for
 *  HTJ2K: cs_dimse_send_file() re-encodes such files with cs_dicom). */
CS_API int cs_dicomnet_ts_known(const char *ts);

/** Whether the peer accepted a context for @p sop_class in syntax @p ts. */
CS_API int cs_dicomnet_accepted(cs_dicomnet_assoc *a, const char *sop_class, const char *ts);

/** The SOP class and transfer syntax of a Part 10 file (meta header only).
 *  @return 0, CS_ENOTFOUND, CS_EFORMAT. */
CS_API int cs_dicomnet_file_probe(const char *path, char sop_class[65], char ts[65]);

/** C-STORE the file at @p path. @p want_ts NULL: send as stored when the
 *  peer accepted that syntax, else decompressed. Otherwise the data is
 *  transcoded to @p want_ts when a context for it was accepted (DCMTK's
 *  own codecs only: uncompressed syntaxes, JPEG and RLE; callers wanting
 *  JPEG-LS use cs_dimse_send_file(), which transcodes with cs_dicom), else
 *  sent as stored or decompressed. @p sent_ts (65 bytes, may be NULL) receives the syntax
 *  used. @return 0 with the DIMSE status in @p status (a refusal by the peer
 *  is a status, not an error), CS_EINVAL (no accepted context),
 *  CS_EFORMAT (unreadable file, transcoding failed), CS_EIO. */
CS_API int cs_dicomnet_store_file(cs_dicomnet_assoc *a, const char *path, const char *want_ts,
                                  int *status, char *sent_ts);

/** Result callback of cs_dicomnet_find(): one matched identifier.
 *  @return 0 to go on, nonzero to cancel. */
typedef int (*cs_dicomnet_result_fn)(void *userdata, const cs_dicomnet_attr *attrs, int n);

/** Study Root C-FIND at @p level ("STUDY", "SERIES", "IMAGE"): @p keys are
 *  the matching and return keys (value "" = return). @return 0 with the
 *  final DIMSE status in @p status, CS_EINVAL, CS_EIO. */
CS_API int cs_dicomnet_find(cs_dicomnet_assoc *a, const char *level, const cs_dicomnet_attr *keys,
                            int nkeys, cs_dicomnet_result_fn fn, void *userdata, int *status);

/** Counts of a C-MOVE. */
typedef struct cs_dicomnet_move_result {
    int status; /**< final DIMSE status */
    int completed, failed, warning;
} cs_dicomnet_move_result;

/** Study Root C-MOVE of what @p keys select at @p level to the AE @p dest
 *  (the peer must know @p dest's address). @return 0 (see @p out->status),
 *  CS_EINVAL, CS_EIO. */
CS_API int cs_dicomnet_move(cs_dicomnet_assoc *a, const char *level, const char *dest,
                            const cs_dicomnet_attr *keys, int nkeys, cs_dicomnet_move_result *out);

/** Make a new DICOM UID under Consilium's root (thread-safe). */
CS_API void cs_dicomnet_uid_new(char out[65]);

#endif
