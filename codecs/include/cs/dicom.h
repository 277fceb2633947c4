/* DICOM Part 10 files: parse, read attributes, decode and render frames,
 * transcode, de-identify. DCMTK parses and writes; the pixel codecs are the
 * fastest correct library per transfer syntax (CharLS for JPEG-LS, OpenJPEG
 * for JPEG 2000 and HTJ2K, libjpeg-turbo for 8-bit JPEG baseline, our own
 * RLE; DCMTK's IJG codecs for 12-bit and lossless JPEG).
 *
 * The implementation is C++ (dicom_shim.cpp): every C++ exception is caught
 * at this boundary and becomes a CS_E* code with a message.
 *
 * Thread-safety: a cs_dicom is used by one thread at a time, except
 * cs_dicom_frame_decode() and cs_dicom_render(), which may be called from
 * several threads at once on the same handle (the frame bytes are read-only
 * after open). Functions without a handle are thread-safe. */
#ifndef CS_DICOM_H
#define CS_DICOM_H

#include <stddef.h>
#include <stdint.h>

#include "cs/buf.h"
#include "cs/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cs_dicom cs_dicom;

/** A tag as (group << 16) | element, e.g. CS_DICOM_TAG(0x0010, 0x0010). */
#define CS_DICOM_TAG(g, e) ((uint32_t)(((uint32_t)(g) << 16) | (uint32_t)(e)))

/* Transfer syntax UIDs used by callers. */
#define CS_DICOM_TS_IMPLICIT_LE "1.2.840.10008.1.2"
#define CS_DICOM_TS_EXPLICIT_LE "1.2.840.10008.1.2.1"
#define CS_DICOM_TS_DEFLATE     "1.2.840.10008.1.2.1.99"
#define CS_DICOM_TS_EXPLICIT_BE "1.2.840.10008.1.2.2"
#define CS_DICOM_TS_JPEG_BASE   "1.2.840.10008.1.2.4.50"
#define CS_DICOM_TS_JPEG_EXT    "1.2.840.10008.1.2.4.51"
#define CS_DICOM_TS_JPEG_LL14   "1.2.840.10008.1.2.4.57"
#define CS_DICOM_TS_JPEG_LL_SV1 "1.2.840.10008.1.2.4.70"
#define CS_DICOM_TS_JLS_LL      "1.2.840.10008.1.2.4.80"
#define CS_DICOM_TS_JLS_NEAR    "1.2.840.10008.1.2.4.81"
#define CS_DICOM_TS_J2K_LL      "1.2.840.10008.1.2.4.90"
#define CS_DICOM_TS_J2K         "1.2.840.10008.1.2.4.91"
#define CS_DICOM_TS_HTJ2K_LL    "1.2.840.10008.1.2.4.201"
#define CS_DICOM_TS_HTJ2K_RPCL  "1.2.840.10008.1.2.4.202"
#define CS_DICOM_TS_HTJ2K       "1.2.840.10008.1.2.4.203"
#define CS_DICOM_TS_RLE         "1.2.840.10008.1.2.5"

/** What a file says about its image. Strings are NUL-terminated, "" when
 *  absent. */
typedef struct cs_dicom_info {
    char sop_class_uid[65], sop_instance_uid[65];
    char study_uid[65], series_uid[65];
    char transfer_syntax[65];
    char modality[17];
    char photometric[17]; /**< as stored, e.g. MONOCHROME2, YBR_FULL_422 */
    int rows, cols;       /**< 0 when the object has no pixel data */
    int frames;           /**< Number of Frames, 1 when absent */
    int samples;          /**< Samples per Pixel */
    int bits_allocated, bits_stored, high_bit;
    int pixel_signed; /**< Pixel Representation 1 */
    int planar;       /**< Planar Configuration 1 (colour by plane) */
    int lossy;        /**< Lossy Image Compression "01" or a lossy syntax */
    /** Rescale Slope / Intercept (1 / 0 when absent); for enhanced objects
     *  from the functional groups (frame 0: cs_dicom_render() uses each
     *  frame's own). */
    double slope;
    double intercept;
    /** The file gives a window (the first of several; enhanced objects:
     *  the Frame VOI LUT of frame 0). */
    int has_window;
    double window_center, window_width;
    int has_modality_lut, has_voi_lut; /**< LUT sequences present */
    double spacing[2];                 /**< row, column spacing in mm */
    /** Where spacing came from: 0 none, 1 Pixel Spacing, 2 Imager Pixel
     *  Spacing (at the detector: label it so). */
    int spacing_kind;
    double frame_time_ms; /**< Frame Time, or 1000/Cine Rate; 0 when absent */
    int instance_number;
    double slice_location; /**< Slice Location or Image Position z; NaN */
} cs_dicom_info;

/** Open a Part 10 file (or a bare dataset in implicit little endian).
 *  Before DCMTK parses, every element header is walked: a declared length
 *  larger than what is left of the file (or of its enclosing sequence or
 *  item), an explicit VR that is not two letters, a deflated dataset that
 *  expands beyond 1 GiB are refused with CS_EFORMAT and a message naming
 *  the element, its offset and the lengths; nothing is allocated from a
 *  declared length. The frame table (fragments per frame from the Basic or
 *  Extended Offset Table, one fragment per frame, or JPEG/J2K end markers)
 *  is built here and is read-only afterwards; no pixel is decoded.
 *  @return 0, CS_ENOTFOUND, CS_EIO, CS_EFORMAT (not DICOM, truncated, bad
 *  lengths, broken fragments, unknown transfer syntax), CS_ENOMEM. */
CS_API int cs_dicom_open(cs_dicom **out, const char *path);
/** Open from memory; @p data is copied. */
CS_API int cs_dicom_open_mem(cs_dicom **out, const void *data, size_t len);
CS_API void cs_dicom_free(cs_dicom *d); /* NULL is a no-op */

/** Fill @p out. @return 0 (always succeeds on an open handle). */
CS_API int cs_dicom_get_info(cs_dicom *d, cs_dicom_info *out);

/** The value of a top-level string-like attribute (all values, joined with
 *  backslashes as stored, trailing padding removed). @return 0,
 *  CS_ENOTFOUND (absent or empty), CS_ERANGE (@p cap too small). */
CS_API int cs_dicom_get_string(cs_dicom *d, uint32_t tag, char *buf, size_t cap);

/** Bytes one decoded frame takes: rows * cols * samples * (8 or 16 bits). */
CS_API size_t cs_dicom_frame_size(const cs_dicom_info *info);

/** Decode frame @p frame (0-based) into @p dst: the stored pixel values,
 *  samples interleaved (planar input is interleaved), one byte per sample
 *  when Bits Allocated is 8 and a native-endian (u)int16 otherwise (1-bit
 *  data is unpacked to one byte per pixel, 0 or 1). Native values are
 *  masked to Bits Stored (unsigned) or sign-extended from it (signed), so
 *  bits above the High Bit never leak (lossless codecs' output too); a
 *  lossy codec's unsigned output above 2^Bits Stored - 1 (overshoot) is
 *  clamped, not wrapped. Colour stays in the photometric
 * interpretation the codec produces: RGB for JPEG with a YBR photometric (converted by the decoder,
 * as DCMTK and pydicom do) and for JPEG 2000 YBR_RCT/YBR_ICT (OpenJPEG's inverse MCT); uncompressed
 * YBR_FULL_422 is expanded to three samples per pixel (the stored Y Cb Cr, as pydicom does); the
 * stored space otherwise. Codecs: CharLS 2.4 (JPEG-LS), OpenJPEG 2.5 (JPEG 2000, HTJ2K), TurboJPEG
 * (8-bit JPEG), DCMTK's IJG (12/16-bit and lossless JPEG), ours (RLE, Deflated Image Frame
 * Compression).
 *  @return 0, CS_ERANGE (no such frame, @p cap too small), CS_EFORMAT. */
CS_API int cs_dicom_frame_decode(cs_dicom *d, int frame, void *dst, size_t cap);

/** The frame's encoded bytes as stored (one frame of an encapsulated
 *  syntax, fragments joined). @param out receives a new buffer. */
CS_API int cs_dicom_frame_encoded(cs_dicom *d, int frame, cs_buf **out);

/** A display window; width <= 0 means "the file's own window, or the
 *  frame's min/max when it has none". */
typedef struct cs_dicom_window {
    double center, width;
} cs_dicom_window;

/** Threads the decode of ONE frame may use in cs_dicom_render() (JPEG 2000
 *  code-blocks on OpenJPEG's threads; other syntaxes decode a frame on one
 *  thread). Default 1; for a latency-bound caller such as the first image
 *  a reader waits for. Set before rendering, not while another thread
 *  renders on @p d. */
CS_API void cs_dicom_set_frame_threads(cs_dicom *d, int threads);

/** Render frame @p frame to 8 bits per sample as a viewer shows it:
 *  modality LUT (rescale or LUT sequence), VOI (@p win, else the file's VOI
 *  LUT, else its first window, else the frame's min/max), MONOCHROME1
 *  inverted, palette expanded, YBR converted. The window is PS3.3
 *  C.11.2.1.2.1 LINEAR: x <= c-0.5-(w-1)/2 -> 0, x > c-0.5+(w-1)/2 -> 255,
 *  else ((x-(c-0.5))/(w-1)+0.5)*255 truncated, as DCMTK (dcmj2pnm agrees
 *  within one grey level). Overlays are not drawn. Writes @p *channels (1
 *  grey or 3 RGB) and rows*cols*channels bytes to @p dst (@p stride bytes
 *  per row). @p win may be NULL. @return 0, CS_ERANGE, CS_EFORMAT. */
CS_API int cs_dicom_render(cs_dicom *d, int frame, const cs_dicom_window *win, uint8_t *dst,
                           size_t stride, size_t cap, int *channels);

/** Options for cs_dicom_transcode(). */
typedef struct cs_dicom_transcode_opts {
    size_t size;
    /** Target syntax; NULL means JPEG-LS lossless (the link default). */
    const char *transfer_syntax;
    /** Quality 1-100 for lossy JPEG baseline, near value (0-9) for
     *  JPEG-LS near-lossless; ignored for lossless syntaxes. Lossy output
     *  sets Lossy Image Compression "01", its ratio and method (PS3.3
     *  C.7.6.1.1.5) and a new SOP Instance UID is NOT made: the caller
     *  decides. */
    int quality;
} cs_dicom_transcode_opts;
#define CS_DICOM_TRANSCODE_OPTS_INIT                                                               \
    {                                                                                              \
        sizeof(cs_dicom_transcode_opts), NULL, 90                                                  \
    }

/** Re-encode the pixel data of @p d in place (all frames). Targets: the
 *  native syntaxes, JPEG-LS lossless (CharLS; decodes back bit for bit),
 *  JPEG-LS near-lossless, JPEG baseline (TurboJPEG, 8-bit grey or RGB;
 *  RGB is coded YCbCr 4:2:2 and labelled YBR_FULL_422). The Photometric
 *  Interpretation follows the decoded data (e.g. RGB after a YBR JPEG) and
 *  Planar Configuration becomes 0. A syntax the data already has is a
 *  no-op. The handle is re-read from its new encoding, so frame access
 *  stays consistent. @return 0, CS_EINVAL (unknown or unsuitable syntax,
 *  e.g. JPEG baseline for 16-bit data, JPEG-LS for 1-bit data), CS_EFORMAT. */
CS_API int cs_dicom_transcode(cs_dicom *d, const cs_dicom_transcode_opts *opts);

/** De-identify by the PS3.15 Annex E Basic Application Level Confidentiality
 *  Profile: remove or replace every attribute its Table E.1-1 lists, at any
 *  depth in sequences (X remove, Z empty, D dummy value, U new UID;
 *  compound actions take the one that keeps the IOD valid: X/Z -> Z, X/D,
 *  Z/D, X/Z/D -> D, where D on a sequence keeps it with its items cleaned;
 *  X/Z/U* keeps the sequence with its UIDs replaced), remove private tags
 *  and whole overlay groups, replace UIDs consistently (2.25.<128-bit hash
 *  of the old UID>, so the same input gives the same output in every
 *  file), set Patient Identity Removed YES, De-identification Method and
 *  its Code Sequence (113100, DCM). @return 0, CS_EINVAL when DCMTK 3.6.7
 *  cannot write the syntax (HTJ2K, Deflated Image Frame Compression:
 *  transcode first). */
CS_API int cs_dicom_deidentify(cs_dicom *d);

/** Write @p d as a Part 10 file in its current transfer syntax, through a
 *  temporary file renamed into place (a reader never sees a partial file).
 *  Syntaxes DCMTK 3.6.7 cannot write (HTJ2K, Deflated Image Frame
 *  Compression) are saved as the original bytes, unchanged. */
CS_API int cs_dicom_save(cs_dicom *d, const char *path);
/** The same, into a new buffer. */
CS_API int cs_dicom_save_mem(cs_dicom *d, cs_buf **out);

/** Frames @p first .. @p first + @p count - 1 decoded into @p dst one after
 *  another (cs_dicom_frame_size() bytes each), on up to @p threads threads
 *  (0: one per core) when the syntax pays for it (encapsulated syntaxes;
 *  native frames are a copy). The first error stops the work and is
 *  returned with its message. */
CS_API int cs_dicom_frames_decode(cs_dicom *d, int first, int count, void *dst, size_t cap,
                                  int threads);

/** The dataset (without pixel data and other bulk data) in the DICOM JSON
 *  model of PS3.18 F.2, as the WADO-RS metadata and QIDO-RS answers carry it.
 *  Pixel Data and binary values over 1 KiB are left out (no BulkDataURI:
 *  the caller adds one if it serves them); the file meta group and group
 *  lengths are not included. Strings are UTF-8: converted from the Specific
 *  Character Set (which then reads ISO_IR 192), bytes that still are not
 *  UTF-8 taken as Latin-1. @param out receives a new buffer holding one JSON object. */
CS_API int cs_dicom_to_json(cs_dicom *d, cs_buf **out);

/* Reports: the consultant's reading as a DICOM object. (report_shim.cpp) */

/** One referenced image of a report. */
typedef struct cs_dicom_ref {
    const char *sop_class_uid, *sop_instance_uid, *series_uid;
} cs_dicom_ref;

/** Make a Basic Text SR (Key Object-style key images as IMAGE content
 *  items) in the study of @p ref: patient and study modules are copied
 *  from @p ref, a new series and SOP Instance UID are made. @p text is
 *  the conclusion (UTF-8), @p author the observer's name.
 *  @param out receives a new handle. */
CS_API int cs_dicom_report_new(cs_dicom **out, cs_dicom *ref, const char *title, const char *text,
                               const char *author, const cs_dicom_ref *keys, int nkeys);

/** The same report made from the Part 10 file @p ref_path and written to
 *  @p out_path (explicit little endian, through a temporary file renamed
 *  into place). @p sop_uid (65 bytes, may be NULL) receives the report's
 *  SOP Instance UID. Thread-safe. @return 0, CS_EINVAL (no text, no study),
 *  CS_EFORMAT (unreadable reference), CS_EIO. */
CS_API int cs_dicom_report_write(const char *out_path, const char *ref_path, const char *title,
                                 const char *text, const char *author, const cs_dicom_ref *keys,
                                 int nkeys, char *sop_uid);

#ifdef __cplusplus
}
#endif

#endif
