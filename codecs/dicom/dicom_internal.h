/* Private declarations of cs_dicom: the pixel codecs (C, one file per
 * library) and the renderer, called by dicom_shim.cpp.
 *
 * Invariants: every function here writes its own message with
 * cs_error_set() when it fails; none allocates more than the caller's
 * geometry implies (decoders check the codestream's declared geometry
 * against the DICOM attributes before decoding). */
#ifndef CS_DICOM_INTERNAL_H
#define CS_DICOM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cs/common.h"
#include "cs/dicom.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A lookup table (modality, VOI or one palette channel): @p n entries,
 *  the first mapping stored value @p first, entries of @p bits bits. */
typedef struct cs_dicom_lut {
    int n, first, bits;
    uint16_t *data; /* NULL when absent */
} cs_dicom_lut;

/** What the renderer needs besides the decoded frame. */
typedef struct cs_dicom_pix {
    cs_dicom_info info;
    /** Photometric interpretation of the decoded frame (may differ from
     *  the stored one: JPEG baseline YBR decodes to RGB). */
    char out_photometric[17];
    cs_dicom_lut modality, voi;
    cs_dicom_lut pal[3];
    /* All windows of the file (center, width pairs); the first is used. */
    int has_window;
    double wc, ww;
    /* VOI LUT Function (0028,1056): 0 LINEAR, 1 LINEAR_EXACT, 2 SIGMOID. */
    int voi_function;
} cs_dicom_pix;

/* Geometry of one decoded sample: 1 or 2 bytes. */
CS_INTERNAL int cs_dicom_out_bytes(const cs_dicom_info *info);

/* Mask to Bits Stored (unsigned) or sign-extend (signed) in place: native
 * data, where bits above the High Bit are not part of the value. */
CS_INTERNAL void cs_dicom_normalize(const cs_dicom_info *info, void *buf, size_t nsamples);
/* The same for a lossy codec's output: unsigned values above 2^Bits Stored
 * - 1 (overshoot) are clamped, not wrapped; signed ones sign-extend.
 * Lossless codecs reproduce native values: cs_dicom_normalize(). */
CS_INTERNAL void cs_dicom_normalize_decoded(const cs_dicom_info *info, void *buf, size_t nsamples);

/* Codecs: decode one frame's codestream into dst (the layout of
 * cs_dicom_frame_decode()). @return 0 or CS_EFORMAT/CS_ERANGE. */
CS_INTERNAL int cs_dicom_rle_decode(const cs_dicom_info *info, const uint8_t *src, size_t n,
                                    void *dst, size_t cap);
CS_INTERNAL int cs_dicom_jls_decode(const cs_dicom_info *info, const uint8_t *src, size_t n,
                                    void *dst, size_t cap);
/* Our JPEG-LS decoder (jls.c), bit-exact with CharLS 2.4: the layout of
 * cs_dicom_jls_decode(). @return 0, CS_EFORMAT / CS_ERANGE / CS_ENOMEM, or 1
 * when the codestream uses what only CharLS decodes (HP colour transform,
 * mapping tables, LSE type 4, MAXVAL below 2^P-1, RESET > 255, point
 * transform, 2 interleaved components): the caller falls back to CharLS. */
CS_INTERNAL int cs_dicom_jls_decode_own(const cs_dicom_info *info, const uint8_t *src, size_t n,
                                        void *dst, size_t cap);
/* @p threads > 1 lets OpenJPEG decode code-blocks of one frame in parallel. */
CS_INTERNAL int cs_dicom_j2k_decode(const cs_dicom_info *info, const uint8_t *src, size_t n,
                                    void *dst, size_t cap, int threads);
/* TurboJPEG, 8-bit baseline only. @return 1 when the codestream is not
 * something TurboJPEG decodes (12-bit, lossless): the caller falls back. */
CS_INTERNAL int cs_dicom_jpeg8_decode(const cs_dicom_info *info, const uint8_t *src, size_t n,
                                      void *dst, size_t cap);
/** A frame's encoded bytes may be split over several fragments. */
typedef struct cs_dicom_span {
    const uint8_t *p;
    size_t n;
} cs_dicom_span;
/* Lossless JPEG (SOF3, predictors 1..7, Pt, restart intervals), reading the
 * frame's @p nparts fragments in place: the output of DCMTK's IJG decoder
 * (interleaved samples, value << Pt; 1 byte when Bits Allocated is 8, else
 * uint16). SOF3's size and components must match the dataset. */
CS_INTERNAL int cs_dicom_ljpeg_decode(const cs_dicom_info *info, const cs_dicom_span *parts,
                                      size_t nparts, void *dst, size_t cap);
/* The JPEG SOF's precision and process: *lossless 1 for SOF3. */
CS_INTERNAL int cs_dicom_jpeg_sof(const uint8_t *src, size_t n, int *precision, int *lossless,
                                  int *components);

/* Encoders: @p out receives a malloc'd codestream. */
CS_INTERNAL int cs_dicom_jls_encode(const cs_dicom_info *info, const void *frame, int near,
                                    uint8_t **out, size_t *outlen);
CS_INTERNAL int cs_dicom_jpeg8_encode(const cs_dicom_info *info, const void *frame, int quality,
                                      uint8_t **out, size_t *outlen);

/* Render a decoded frame (see cs_dicom_render()). */
CS_INTERNAL int cs_dicom_render_frame(const cs_dicom_pix *p, const void *frame,
                                      const cs_dicom_window *win, uint8_t *dst, size_t stride,
                                      size_t cap, int *channels);

/* The Annex E basic profile table. */
typedef struct cs_dicom_deid_rule {
    uint32_t tag;  /* with 0xFF wildcards in (50xx,xxxx) and (60xx,4000) handled by mask */
    uint32_t mask; /* bits of tag that must match */
    char action;   /* 'X' remove, 'Z' empty, 'D' dummy, 'U' new UID, 'K' keep */
} cs_dicom_deid_rule;
CS_INTERNAL const cs_dicom_deid_rule *cs_dicom_deid_rules(size_t *n);

#ifdef __cplusplus
}
#endif

#endif
