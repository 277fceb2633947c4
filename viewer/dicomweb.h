/* viewer/dicomweb: the DICOMweb client of the reading mode (PS3.18 subset).
 *
 * QIDO-RS study and series lists, WADO-RS series metadata and raw frames
 * (multipart/related, explicit VR little endian), DICOM JSON accessors
 * (PS3.18 F.2) and the multipart parser. Every request carries
 * `Authorization: Bearer T` when a token is given and is counted in
 * vw_dw.requests (so tests can prove that scrolling a loaded series makes
 * none). Errors come back as CS_E* codes with a message for the user that
 * names the request (cs_error_last()). No DCMTK: the server decodes. */
#ifndef VW_DICOMWEB_H
#define VW_DICOMWEB_H

#include <stdatomic.h>
#include <stddef.h>

#include <curl/curl.h>
#include <jansson.h>

/** The client's settings; shared read-only by threads but for the counter. */
typedef struct {
    char base[1024]; /**< "http://host:port/dicomweb", no trailing slash */
    const char *token;
    int insecure;
    const char *cacert;
    long timeout_s;
    atomic_long requests; /**< HTTP requests started so far */
} vw_dw;

/** One answer: body (malloc, NUL-terminated), status, Content-Type. */
typedef struct {
    char *body;
    size_t len;
    long status;
    char ctype[512];
    char err[CURL_ERROR_SIZE];
    int truncated; /**< the body hit the size limit */
} vw_dw_resp;

void vw_dw_resp_free(vw_dw_resp *r);

/** Set up @p easy for GET @p url with @p accept (NULL: none); @p hdrs
 *  receives the header list to free after the transfer. Counts a request. */
int vw_dw_setup(vw_dw *c, CURL *easy, const char *url, const char *accept, vw_dw_resp *r,
                struct curl_slist **hdrs);
/** The error (or 0) for a finished transfer: curl code @p cc, the status,
 *  named after @p what and @p url. Sets the message. */
int vw_dw_check(const vw_dw_resp *r, int cc, const char *what, const char *url);
/** Blocking GET of base + @p path, parsed as a JSON array (dicom+json).
 *  @p what names it in messages ("the study list"). @p cancel (may be
 *  NULL): the transfer is abandoned (CS_ECLOSED) once it turns non-zero. */
int vw_dw_get_json(vw_dw *c, const char *path, const char *what, const atomic_int *cancel,
                   json_t **out);

/** The body of the first part of a multipart/related answer whose
 *  Content-Type is @p ctype (boundary parameter, quoted or not).
 *  @return 0, or CS_EFORMAT with a message in @p err. */
int vw_dw_multipart_first(const char *ctype, const char *body, size_t len, const char **part,
                          size_t *plen, char *err, size_t errn);

/* ---- DICOM JSON (PS3.18 F.2): obj is one dataset, tag "GGGGEEEE" ---- */

/** The first value as a string (PN: its Alphabetic group), or NULL. */
const char *vw_dj_str(const json_t *obj, const char *tag);
/** Value @p i as a number (JSON number, or a numeric string for DS/IS as
 *  some servers send). @return 0, or -1 when absent or not a number. */
int vw_dj_num(const json_t *obj, const char *tag, size_t i, double *out);
/** Number of values (0 when absent). */
size_t vw_dj_count(const json_t *obj, const char *tag);
/** Copy the first value (string) into @p out ("" when absent). */
void vw_dj_copy(const json_t *obj, const char *tag, char *out, size_t n);

#endif
