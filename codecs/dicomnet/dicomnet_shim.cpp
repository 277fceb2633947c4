/* cs_dicomnet: DIMSE associations over DCMTK's ASC_/DIMSE_ API, behind C.
 *
 * Invariants: no threads, no globals of our own (DCMTK's process-wide knobs
 * are set once, under pthread_once); every exception is caught at the C
 * boundary; a received dataset goes to a temporary file as it arrives
 * (bit-preserving: the sender's transfer syntax and bytes are kept), is
 * parsed in full before anyone sees it, and is removed unless the store
 * handler renamed it away. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <new>
#include <openssl/evp.h>
#include <poll.h>
#include <string>
#include <vector>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcostrmf.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dcrleerg.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpeg/djencode.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/oflog/oflog.h"

extern "C" {
#include "cs/dicomnet.h"
#include "cs/err.h"
}

struct cs_dicomnet_listener {
    T_ASC_Network *net;
    int port;
    std::string aet;
    int timeout;
    uint32_t max_pdu;
    int any_called;
};

struct cs_dicomnet_assoc {
    T_ASC_Network *net; /* owned by SCU associations only */
    T_ASC_Association *assoc;
    int scu;
    int timeout;
    unsigned rx; /* received-file counter (temp names) */
    DIC_US msg_id;
    char calling[17];
    char host[64];
};

namespace
{

pthread_once_t init_once = PTHREAD_ONCE_INIT;

void init_dcmtk(void)
{
    /* DCMTK reads this on every connection; 1 = Nagle off. */
    setenv("TCP_NODELAY", "1", 0);
    dcmDisableGethostbyaddr.set(OFTrue);
    dcmConnectionTimeout.set(10);
    /* No dcmjpls here: its bundled CharLS exports the same symbols as the
     * system CharLS cs_dicom links, and the calls would cross. JPEG-LS and
     * other re-encodings go through cs_dicom_transcode() (cs_dimse_send_file). */
    OFLog::configure(OFLogger::ERROR_LOG_LEVEL);
    DJDecoderRegistration::registerCodecs();
    DJEncoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
    DcmRLEEncoderRegistration::registerCodecs();
}

void init(void)
{
    pthread_once(&init_once, init_dcmtk);
}

/* Transfer syntaxes we accept for storage, most preferred first: the
 * compressed ones the sender would only propose for data already in them
 * (we keep them), then the uncompressed ones. */
const char *const store_syntaxes[] = {
    UID_JPEGLSLosslessTransferSyntax,
    UID_JPEGLSLossyTransferSyntax,
    UID_JPEGProcess14SV1TransferSyntax,
    UID_JPEGProcess14TransferSyntax,
    UID_JPEG2000LosslessOnlyTransferSyntax,
    UID_JPEG2000TransferSyntax,
    /* Not HTJ2K (1.2.840.10008.1.2.4.201-203): DCMTK 3.6.7's DIMSE layer
     * refuses every message on a context in a syntax it does not know, so
     * we do not accept one; a sender falls back to its other proposals. */
    UID_JPEGProcess1TransferSyntax,
    UID_JPEGProcess2_4TransferSyntax,
    UID_RLELosslessTransferSyntax,
    UID_DeflatedExplicitVRLittleEndianTransferSyntax,
    UID_LittleEndianExplicitTransferSyntax,
    UID_BigEndianExplicitTransferSyntax,
    UID_LittleEndianImplicitTransferSyntax,
};
/* Every DIMSE wait here is DIMSE_NONBLOCKING with the association's
 * timeout: DCMTK ignores the timeout in blocking mode, and a peer that
 * stalls must not hold a thread (or the forwarder) forever. */
const char *const plain_syntaxes[] = {
    UID_LittleEndianExplicitTransferSyntax,
    UID_BigEndianExplicitTransferSyntax,
    UID_LittleEndianImplicitTransferSyntax,
};
const char *const service_classes[] = {
    UID_VerificationSOPClass,
    UID_FINDStudyRootQueryRetrieveInformationModel,
    UID_FINDPatientRootQueryRetrieveInformationModel,
};

int cond_error(int code, const char *what, const OFCondition &c)
{
    return cs_error_set(code, "%s: %s", what, c.text());
}

/* Bounded copy that truncates on purpose (-O2 flags snprintf "%s" here). */
void copy(char *dst, size_t cap, const char *src)
{
    if (!cap)
        return;
    size_t n = src ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

/* A string attribute of @p ds (all values, trailing spaces gone). */
void get(DcmItem *ds, const DcmTagKey &tag, char *dst, size_t cap)
{
    OFString v;
    dst[0] = '\0';
    if (ds->findAndGetOFStringArray(tag, v).good()) {
        size_t n = v.length();
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\0'))
            n--;
        snprintf(dst, cap, "%.*s", (int)n, v.c_str());
    }
}

int get_int(DcmItem *ds, const DcmTagKey &tag, int dflt)
{
    Sint32 v;
    if (ds->findAndGetSint32(tag, v).good())
        return (int)v;
    char buf[32];
    get(ds, tag, buf, sizeof(buf));
    if (!buf[0])
        return dflt;
    char *end;
    long l = strtol(buf, &end, 10);
    return end != buf ? (int)l : dflt;
}

/* The received file's SHA-256, taken while it grows: DCMTK calls
 * rx_progress() after each PDV, and every RX_STEP bytes the new part of the
 * file is hashed from the page cache, instead of opening and reading the
 * whole file again after the last PDV. */
#define RX_STEP (64u << 10)

struct rx_hash {
    int fd; /* a read descriptor of the temporary file */
    EVP_MD_CTX *md;
    int64_t hashed;     /* bytes hashed, from offset 0 */
    unsigned long seen; /* dataset bytes at the last catch-up */
    int err;            /* errno of a failed read, else 0 */
};

static void rx_catch_up(rx_hash *h)
{
    unsigned char buf[1 << 16];
    while (!h->err) {
        ssize_t n = pread(h->fd, buf, sizeof(buf), h->hashed);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            h->err = n < 0 ? errno : 0;
            break;
        }
        EVP_DigestUpdate(h->md, buf, (size_t)n);
        h->hashed += n;
    }
}

static void rx_progress(void *userdata, unsigned long bytes)
{
    rx_hash *h = (rx_hash *)userdata;
    if (bytes - h->seen < RX_STEP)
        return;
    h->seen = bytes;
    rx_catch_up(h);
}

static void rx_free(rx_hash *h)
{
    if (h->fd >= 0)
        close(h->fd);
    EVP_MD_CTX_free(h->md);
    h->fd = -1;
    h->md = NULL;
}

/* Hash what is left of the (now closed) file into @p out; @return 0 or
 * CS_EIO. */
static int rx_finish(rx_hash *h, const char *path, char out[65], int64_t *size)
{
    /* Start writing the file back now: the parse below overlaps the I/O
     * that a durable store's fdatasync then waits for. One request for the
     * whole file: on a virtual disk each one costs an exit. A hint only
     * (Linux); errors do not matter here. */
    sync_file_range(h->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    rx_catch_up(h);
    if (h->err)
        return cs_error_set(CS_EIO, "cannot read %s: %s", path, strerror(h->err));
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(h->md, md, &mdlen);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    *size = h->hashed;
    return 0;
}

/* Parse @p path fully and fill @p inst. @return 0 or a DIMSE status. */
int describe(const char *path, const T_DIMSE_C_StoreRQ &req, cs_dicomnet_instance *inst,
             std::string &why)
{
    DcmFileFormat ff;
    OFCondition c = ff.loadFile(path);
    if (c.bad()) {
        why = std::string("dataset does not parse: ") + c.text();
        return CS_DICOMNET_CANNOT_UNDERSTAND;
    }
    DcmDataset *ds = ff.getDataset();
    /* Values over 4 KB are not loaded, but DCMTK checks every length
     * against the bytes left in the file: a dataset cut short or an element
     * longer than the file fails loadFile() above. */
    get(ds, DCM_SOPClassUID, inst->sop_class, sizeof(inst->sop_class));
    get(ds, DCM_SOPInstanceUID, inst->sop_uid, sizeof(inst->sop_uid));
    get(ds, DCM_StudyInstanceUID, inst->study_uid, sizeof(inst->study_uid));
    get(ds, DCM_SeriesInstanceUID, inst->series_uid, sizeof(inst->series_uid));
    if (strcmp(inst->sop_uid, req.AffectedSOPInstanceUID) ||
        strcmp(inst->sop_class, req.AffectedSOPClassUID)) {
        why = std::string("dataset SOP class/instance (") + inst->sop_class + " " + inst->sop_uid +
              ") differ from the request's (" + req.AffectedSOPClassUID + " " +
              req.AffectedSOPInstanceUID + ")";
        return CS_DICOMNET_DATASET_MISMATCH;
    }
    if (!inst->study_uid[0] || !inst->series_uid[0]) {
        why = "dataset lacks Study or Series Instance UID";
        return CS_DICOMNET_DATASET_MISMATCH;
    }
    /* The meta header's syntax: DCMTK reads a dataset in a syntax it does
     * not know (HTJ2K) as explicit little endian and would say so. */
    get(ff.getMetaInfo(), DCM_TransferSyntaxUID, inst->transfer_syntax,
        sizeof(inst->transfer_syntax));
    if (!inst->transfer_syntax[0])
        copy(inst->transfer_syntax, sizeof(inst->transfer_syntax),
             DcmXfer(ds->getOriginalXfer()).getXferID());
    get(ds, DCM_PatientID, inst->patient_id, sizeof(inst->patient_id));
    get(ds, DCM_PatientName, inst->patient_name, sizeof(inst->patient_name));
    get(ds, DCM_PatientBirthDate, inst->patient_birth_date, sizeof(inst->patient_birth_date));
    get(ds, DCM_PatientSex, inst->patient_sex, sizeof(inst->patient_sex));
    get(ds, DCM_StudyDate, inst->study_date, sizeof(inst->study_date));
    get(ds, DCM_StudyTime, inst->study_time, sizeof(inst->study_time));
    get(ds, DCM_AccessionNumber, inst->accession, sizeof(inst->accession));
    get(ds, DCM_StudyID, inst->study_id, sizeof(inst->study_id));
    get(ds, DCM_StudyDescription, inst->study_desc, sizeof(inst->study_desc));
    get(ds, DCM_ReferringPhysicianName, inst->referring, sizeof(inst->referring));
    get(ds, DCM_Modality, inst->modality, sizeof(inst->modality));
    get(ds, DCM_SeriesDescription, inst->series_desc, sizeof(inst->series_desc));
    get(ds, DCM_BodyPartExamined, inst->body_part, sizeof(inst->body_part));
    inst->series_number = get_int(ds, DCM_SeriesNumber, -1);
    inst->instance_number = get_int(ds, DCM_InstanceNumber, -1);
    Uint16 us;
    inst->rows = ds->findAndGetUint16(DCM_Rows, us).good() ? us : 0;
    inst->cols = ds->findAndGetUint16(DCM_Columns, us).good() ? us : 0;
    inst->frames = inst->rows ? get_int(ds, DCM_NumberOfFrames, 1) : 0;
    return 0;
}

/* ------------------------------------------------------------ C-FIND SCP */

struct find_ctx {
    cs_dicomnet_assoc *a;
    T_ASC_PresentationContextID pid;
    T_DIMSE_C_FindRQ *req;
    DcmDataset *query;
    const char *level;
    int cancelled;
    int failed;
    int count;
};

int find_emit(void *vctx, const cs_dicomnet_attr *attrs, int n)
{
    find_ctx *fc = (find_ctx *)vctx;
    try {
        if (fc->cancelled || fc->failed)
            return 1;
        if (DIMSE_checkForCancelRQ(fc->a->assoc, fc->pid, fc->req->MessageID).good()) {
            fc->cancelled = 1;
            return 1;
        }
        DcmDataset rsp;
        for (unsigned long i = 0; i < fc->query->card(); i++) {
            DcmElement *e = fc->query->getElement(i);
            DcmTagKey key = e->getTag();
            if (key == DCM_SpecificCharacterSet)
                continue;
            if (e->ident() == EVR_SQ) {
                rsp.insertEmptyElement(DcmTag(key));
                continue;
            }
            uint32_t t = ((uint32_t)key.getGroup() << 16) | key.getElement();
            const char *v = "";
            for (int k = 0; k < n; k++)
                if (attrs[k].tag == t) {
                    v = attrs[k].value ? attrs[k].value : "";
                    break;
                }
            rsp.putAndInsertString(DcmTag(key), v);
        }
        rsp.putAndInsertString(DCM_QueryRetrieveLevel, fc->level);
        rsp.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
        T_DIMSE_C_FindRSP r;
        memset(&r, 0, sizeof(r));
        r.MessageIDBeingRespondedTo = fc->req->MessageID;
        OFStandard::strlcpy(r.AffectedSOPClassUID, fc->req->AffectedSOPClassUID,
                            sizeof(r.AffectedSOPClassUID));
        r.opts = O_FIND_AFFECTEDSOPCLASSUID;
        r.DimseStatus = STATUS_Pending;
        r.DataSetType = DIMSE_DATASET_PRESENT;
        OFCondition c = DIMSE_sendFindResponse(fc->a->assoc, fc->pid, fc->req, &r, &rsp, NULL);
        if (c.bad()) {
            fc->failed = 1;
            return 1;
        }
        fc->count++;
        return 0;
    } catch (...) {
        fc->failed = 1;
        return 1;
    }
}

int serve_find(cs_dicomnet_assoc *a, T_ASC_PresentationContextID pid, T_DIMSE_C_FindRQ &req,
               const cs_dicomnet_handlers *h)
{
    DcmDataset *q = NULL;
    T_ASC_PresentationContextID dpid = pid;
    OFCondition c = DIMSE_receiveDataSetInMemory(a->assoc, DIMSE_NONBLOCKING, a->timeout, &dpid, &q,
                                                 NULL, NULL);
    if (c.bad())
        return cond_error(CS_EIO, "C-FIND identifier", c);
    char level[17];
    get(q, DCM_QueryRetrieveLevel, level, sizeof(level));
    std::vector<std::string> vals;
    std::vector<cs_dicomnet_attr> keys;
    vals.reserve(q->card());
    for (unsigned long i = 0; i < q->card(); i++) {
        DcmElement *e = q->getElement(i);
        DcmTagKey key = e->getTag();
        if (key == DCM_QueryRetrieveLevel || key == DCM_SpecificCharacterSet ||
            e->ident() == EVR_SQ)
            continue;
        OFString v;
        e->getOFStringArray(v);
        size_t len = v.length();
        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\0'))
            len--;
        vals.push_back(std::string(v.c_str(), len));
        keys.push_back({((uint32_t)key.getGroup() << 16) | key.getElement(), NULL});
    }
    for (size_t i = 0; i < keys.size(); i++)
        keys[i].value = vals[i].c_str();
    find_ctx fc = {a, pid, &req, q, level, 0, 0, 0};
    int status = CS_DICOMNET_FIND_UNABLE;
    if (strcmp(level, "PATIENT") && strcmp(level, "STUDY") && strcmp(level, "SERIES") &&
        strcmp(level, "IMAGE")) {
        cs_error_set(CS_EINVAL, "C-FIND with Query/Retrieve Level '%s'", level);
        status = CS_DICOMNET_FIND_BAD_KEYS;
    } else if (h->find) {
        status =
            h->find(level, keys.data(), (int)keys.size(), find_emit, &fc, a->calling, h->userdata);
    }
    delete q;
    if (fc.failed)
        return cs_error_set(CS_EIO, "C-FIND: the peer went away during the answers");
    T_DIMSE_C_FindRSP r;
    memset(&r, 0, sizeof(r));
    r.MessageIDBeingRespondedTo = req.MessageID;
    OFStandard::strlcpy(r.AffectedSOPClassUID, req.AffectedSOPClassUID,
                        sizeof(r.AffectedSOPClassUID));
    r.opts = O_FIND_AFFECTEDSOPCLASSUID;
    r.DimseStatus =
        fc.cancelled ? STATUS_FIND_Cancel_MatchingTerminatedDueToCancelRequest : (DIC_US)status;
    r.DataSetType = DIMSE_DATASET_NULL;
    c = DIMSE_sendFindResponse(a->assoc, pid, &req, &r, NULL, NULL);
    if (c.bad())
        return cond_error(CS_EIO, "C-FIND response", c);
    return 0;
}

/* ----------------------------------------------------------- C-STORE SCP */

int serve_store(cs_dicomnet_assoc *a, T_ASC_PresentationContextID pid, T_DIMSE_C_StoreRQ &req,
                const cs_dicomnet_handlers *h)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s/.rx-%ld-%lx-%u.part", h->tmp_dir ? h->tmp_dir : "/tmp",
             (long)getpid(), (unsigned long)(uintptr_t)a, a->rx++);
    DcmOutputFileStream *fs = NULL;
    rx_hash rx = {-1, NULL, 0, 0, 0};
    OFCondition c = DIMSE_createFilestream(tmp, &req, a->assoc, pid, OFTrue, &fs);
    int status = CS_DICOMNET_SUCCESS;
    std::string why;
    if (c.bad()) {
        /* Cannot write here: swallow the dataset and refuse it. */
        delete fs;
        unlink(tmp);
        DIC_UL bytes = 0, pdvs = 0;
        c = DIMSE_ignoreDataSet(a->assoc, DIMSE_NONBLOCKING, a->timeout, &bytes, &pdvs);
        if (c.bad())
            return cond_error(CS_EIO, "C-STORE dataset", c);
        status = CS_DICOMNET_OUT_OF_RESOURCES;
        why = "cannot create a temporary file";
    } else {
        T_ASC_PresentationContextID dpid = pid;
        rx.fd = open(tmp, O_RDONLY | O_CLOEXEC);
        rx.md = EVP_MD_CTX_new();
        if (rx.fd < 0 || !rx.md || !EVP_DigestInit_ex(rx.md, EVP_sha256(), NULL))
            rx.err = rx.fd < 0 ? errno : ENOMEM;
        c = DIMSE_receiveDataSetInFile(a->assoc, DIMSE_NONBLOCKING, a->timeout, &dpid, fs,
                                       rx.err ? NULL : rx_progress, &rx);
        delete fs;
        if (c.bad()) {
            rx_free(&rx);
            unlink(tmp);
            return cs_error_set(c == DIMSE_NODATAAVAILABLE ? CS_ETIMEDOUT : CS_EIO,
                                "C-STORE of %s from %s: the dataset did not arrive whole: %s",
                                req.AffectedSOPInstanceUID, a->calling, c.text());
        }
    }
    cs_dicomnet_instance inst;
    memset(&inst, 0, sizeof(inst));
    if (status == CS_DICOMNET_SUCCESS) {
        inst.path = tmp;
        copy(inst.calling_aet, sizeof(inst.calling_aet), a->calling);
        if (rx_finish(&rx, tmp, inst.sha256, &inst.size) < 0) {
            status = CS_DICOMNET_OUT_OF_RESOURCES;
            why = cs_error_last();
        }
        if (status == CS_DICOMNET_SUCCESS)
            status = describe(tmp, req, &inst, why);
        if (status == CS_DICOMNET_SUCCESS) {
            status = h->store ? h->store(&inst, h->userdata) : CS_DICOMNET_OUT_OF_RESOURCES;
            if (status != CS_DICOMNET_SUCCESS)
                why = cs_error_last();
        }
        unlink(tmp); /* ENOENT once the store renamed it */
    }
    rx_free(&rx);
    T_DIMSE_C_StoreRSP r;
    memset(&r, 0, sizeof(r));
    r.MessageIDBeingRespondedTo = req.MessageID;
    r.DimseStatus = (DIC_US)status;
    r.DataSetType = DIMSE_DATASET_NULL;
    OFStandard::strlcpy(r.AffectedSOPClassUID, req.AffectedSOPClassUID,
                        sizeof(r.AffectedSOPClassUID));
    OFStandard::strlcpy(r.AffectedSOPInstanceUID, req.AffectedSOPInstanceUID,
                        sizeof(r.AffectedSOPInstanceUID));
    r.opts = O_STORE_AFFECTEDSOPCLASSUID | O_STORE_AFFECTEDSOPINSTANCEUID;
    DcmDataset detail;
    if (status != CS_DICOMNET_SUCCESS && !why.empty())
        detail.putAndInsertString(DCM_ErrorComment, why.substr(0, 64).c_str());
    c = DIMSE_sendStoreResponse(a->assoc, pid, &req, &r,
                                status != CS_DICOMNET_SUCCESS && !why.empty() ? &detail : NULL);
    if (c.bad())
        return cond_error(CS_EIO, "C-STORE response", c);
    if (status != CS_DICOMNET_SUCCESS)
        cs_error_set(CS_EFORMAT, "C-STORE of %s from %s refused (0x%04x): %s",
                     req.AffectedSOPInstanceUID, a->calling, status, why.c_str());
    return status == CS_DICOMNET_SUCCESS ? 0 : 1; /* 1: refused, go on */
}

cs_dicomnet_assoc *assoc_new(void)
{
    cs_dicomnet_assoc *a = (cs_dicomnet_assoc *)calloc(1, sizeof(*a));
    if (a)
        a->msg_id = 1;
    return a;
}

} // namespace

/* ------------------------------------------------------------- C entry */

extern "C" int cs_dicomnet_peer_parse(cs_dicomnet_peer *out, const char *text)
{
    memset(out, 0, sizeof(*out));
    const char *at = text ? strchr(text, '@') : NULL;
    const char *colon = at ? strrchr(at, ':') : NULL;
    if (!at || !colon || at == text || at - text > 16 || colon == at + 1 ||
        colon - at - 1 >= (long)sizeof(out->host))
        return cs_error_set(CS_EINVAL, "peer '%s' is not AET@HOST:PORT", text ? text : "");
    for (const char *p = text; p < at; p++)
        if ((unsigned char)*p < 0x20 || *p == '\\' || (unsigned char)*p >= 0x7f)
            return cs_error_set(CS_EINVAL, "peer '%s': bad character in the AE title", text);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 1 || port > 65535)
        return cs_error_set(CS_EINVAL, "peer '%s': bad port", text);
    snprintf(out->aet, sizeof(out->aet), "%.*s", (int)(at - text), text);
    snprintf(out->host, sizeof(out->host), "%.*s", (int)(colon - at - 1), at + 1);
    out->port = (int)port;
    return 0;
}

extern "C" void cs_dicomnet_uid_new(char out[65])
{
    init();
    char buf[100];
    dcmGenerateUniqueIdentifier(buf, SITE_INSTANCE_UID_ROOT);
    buf[64] = '\0'; /* UIDs are at most 64 characters */
    memcpy(out, buf, strlen(buf) + 1);
}

extern "C" int cs_dicomnet_listen(cs_dicomnet_listener **out, const cs_dicomnet_listen_opts *o)
{
    *out = NULL;
    init();
    try {
        cs_dicomnet_listener *l = new cs_dicomnet_listener();
        l->aet = o->aet ? o->aet : "CONSILIUM";
        l->timeout = o->timeout_s > 0 ? o->timeout_s : 30;
        l->max_pdu = o->max_pdu ? o->max_pdu : 116794;
        l->any_called = o->any_called;
        OFCondition c = ASC_initializeNetwork(NET_ACCEPTOR, o->port, l->timeout, &l->net);
        if (c.bad()) {
            delete l;
            return cs_error_set(CS_EIO, "cannot listen on DICOM port %d: %s", o->port, c.text());
        }
        l->port = o->port;
        int fd = DUL_networkSocket(l->net->network);
        /* Several threads accept: the one that loses a race must get
         * EAGAIN from accept(), not block in it. (Accepted sockets do not
         * inherit O_NONBLOCK on Linux.) */
        if (fd >= 0)
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);
        if (fd >= 0 && getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
            l->port = ntohs(sa.sin_port);
        *out = l;
        return 0;
    } catch (const std::bad_alloc &) {
        return cs_error_set(CS_ENOMEM, "out of memory");
    } catch (...) {
        return cs_error_set(CS_EIO, "DCMTK failed to listen");
    }
}

extern "C" int cs_dicomnet_listener_port(const cs_dicomnet_listener *l)
{
    return l->port;
}

extern "C" void cs_dicomnet_listener_free(cs_dicomnet_listener *l)
{
    if (!l)
        return;
    try {
        ASC_dropNetwork(&l->net);
    } catch (...) {
    }
    delete l;
}

extern "C" int cs_dicomnet_accept(cs_dicomnet_listener *l, cs_dicomnet_assoc **out, int timeout_ms)
{
    *out = NULL;
    try {
        int fd = DUL_networkSocket(l->net->network);
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, timeout_ms);
        if (r == 0 || (r < 0 && errno == EINTR))
            return CS_ETIMEDOUT;
        if (r < 0)
            return cs_error_set(CS_EIO, "poll on the DICOM port: %s", strerror(errno));
        T_ASC_Association *assoc = NULL;
        OFCondition c = ASC_receiveAssociation(l->net, &assoc, (long)l->max_pdu, NULL, NULL,
                                               OFFalse, DUL_NOBLOCK, 1);
        if (c == DUL_NOASSOCIATIONREQUEST ||
            (c.bad() && strstr(c.text(), "accept failed") && strstr(c.text(), strerror(EAGAIN)))) {
            ASC_destroyAssociation(&assoc);
            return CS_ETIMEDOUT; /* another thread took it */
        }
        if (c.bad()) {
            if (assoc) {
                ASC_dropSCPAssociation(assoc);
                ASC_destroyAssociation(&assoc);
            }
            return cond_error(CS_EFORMAT, "association request", c);
        }
        cs_dicomnet_assoc *a = assoc_new();
        if (!a) {
            ASC_abortAssociation(assoc);
            ASC_dropSCPAssociation(assoc);
            ASC_destroyAssociation(&assoc);
            return cs_error_set(CS_ENOMEM, "out of memory");
        }
        a->assoc = assoc;
        a->timeout = l->timeout;
        char called[17];
        ASC_getAPTitles(assoc->params, a->calling, sizeof(a->calling), called, sizeof(called), NULL,
                        0);
        copy(a->host, sizeof(a->host), assoc->params->DULparams.callingPresentationAddress);
        if (!a->calling[0] && !called[0]) {
            cs_error_set(CS_EFORMAT, "%s closed the connection without an association request",
                         a->host);
            cs_dicomnet_assoc_free(a);
            return CS_EFORMAT;
        }
        if (!l->any_called && l->aet != called) {
            T_ASC_RejectParameters rej = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
                                          ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED};
            ASC_rejectAssociation(assoc, &rej);
            cs_error_set(
                CS_EFORMAT,
                "association from %s (%s) rejected: called AE title '%s' is not ours ('%s')",
                a->calling, a->host, called, l->aet.c_str());
            cs_dicomnet_assoc_free(a);
            return CS_EFORMAT;
        }
        int nstore = numberOfDcmAllStorageSOPClassUIDs;
        c = ASC_acceptContextsWithPreferredTransferSyntaxes(
            assoc->params, (const char **)service_classes, 3, (const char **)plain_syntaxes, 3);
        if (c.good())
            c = ASC_acceptContextsWithPreferredTransferSyntaxes(
                assoc->params, (const char **)dcmAllStorageSOPClassUIDs, nstore,
                (const char **)store_syntaxes,
                (int)(sizeof(store_syntaxes) / sizeof(store_syntaxes[0])));
        if (c.bad()) {
            ASC_abortAssociation(assoc);
            cs_dicomnet_assoc_free(a);
            return cond_error(CS_EFORMAT, "presentation contexts", c);
        }
        std::string refused;
        int n = ASC_countPresentationContexts(assoc->params);
        for (int i = 0; i < n; i++) {
            T_ASC_PresentationContext pc;
            ASC_getPresentationContext(assoc->params, i, &pc);
            if (pc.resultReason == ASC_P_ACCEPTANCE)
                continue;
            if (refused.size() < 400) {
                refused += refused.empty() ? "" : "; ";
                refused += pc.abstractSyntax;
                refused += pc.resultReason == ASC_P_TRANSFERSYNTAXESNOTSUPPORTED
                               ? " (transfer syntax "
                               : " (abstract syntax not supported; ";
                for (int k = 0; k < pc.transferSyntaxCount; k++)
                    refused += std::string(k ? "," : "") + pc.proposedTransferSyntaxes[k];
                refused += ")";
            }
        }
        if (ASC_countAcceptedPresentationContexts(assoc->params) == 0) {
            T_ASC_RejectParameters rej = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
                                          ASC_REASON_SU_NOREASON};
            ASC_rejectAssociation(assoc, &rej);
            cs_error_set(
                CS_EFORMAT,
                "association from %s (%s) rejected: no presentation context we support: %s",
                a->calling, a->host, refused.c_str());
            cs_dicomnet_assoc_free(a);
            return CS_EFORMAT;
        }
        c = ASC_acknowledgeAssociation(assoc);
        if (c.bad()) {
            cs_dicomnet_assoc_free(a);
            return cond_error(CS_EFORMAT, "association acknowledge", c);
        }
        if (!refused.empty())
            cs_error_set(0, "refused contexts from %s: %s", a->calling, refused.c_str());
        else
            cs_error_clear();
        *out = a;
        return 0;
    } catch (const std::bad_alloc &) {
        return cs_error_set(CS_ENOMEM, "out of memory");
    } catch (...) {
        return cs_error_set(CS_EIO, "DCMTK failed during an association request");
    }
}

extern "C" int cs_dicomnet_serve(cs_dicomnet_assoc *a, const cs_dicomnet_handlers *h)
{
    try {
        for (;;) {
            T_DIMSE_Message msg;
            T_ASC_PresentationContextID pid = 0;
            DcmDataset *detail = NULL;
            OFCondition c =
                DIMSE_receiveCommand(a->assoc, DIMSE_NONBLOCKING, a->timeout, &pid, &msg, &detail);
            delete detail;
            if (c == DUL_PEERREQUESTEDRELEASE) {
                ASC_acknowledgeRelease(a->assoc);
                return 0;
            }
            if (c == DUL_PEERABORTEDASSOCIATION)
                return cs_error_set(CS_EIO, "%s aborted the association", a->calling);
            if (c == DIMSE_NODATAAVAILABLE) {
                ASC_abortAssociation(a->assoc);
                return cs_error_set(CS_ETIMEDOUT, "%s sent nothing for %d s: aborted", a->calling,
                                    a->timeout);
            }
            if (c.bad()) {
                ASC_abortAssociation(a->assoc);
                return cs_error_set(CS_EFORMAT, "bad message from %s: %s; aborted", a->calling,
                                    c.text());
            }
            int r = 0;
            switch (msg.CommandField) {
            case DIMSE_C_ECHO_RQ:
                c = DIMSE_sendEchoResponse(a->assoc, pid, &msg.msg.CEchoRQ, STATUS_Success, NULL);
                r = c.good() ? 0 : cond_error(CS_EIO, "C-ECHO response", c);
                break;
            case DIMSE_C_STORE_RQ:
                r = serve_store(a, pid, msg.msg.CStoreRQ, h);
                break;
            case DIMSE_C_FIND_RQ:
                r = serve_find(a, pid, msg.msg.CFindRQ, h);
                break;
            case DIMSE_C_CANCEL_RQ:
                break; /* a cancel that came after the answers: nothing to stop */
            default:
                ASC_abortAssociation(a->assoc);
                return cs_error_set(CS_EFORMAT, "%s sent DIMSE command 0x%04x we do not serve",
                                    a->calling, (unsigned)msg.CommandField);
            }
            if (r < 0) {
                ASC_abortAssociation(a->assoc);
                return r;
            }
        }
    } catch (const std::bad_alloc &) {
        return cs_error_set(CS_ENOMEM, "out of memory");
    } catch (...) {
        return cs_error_set(CS_EIO, "DCMTK failed while serving %s", a->calling);
    }
}

extern "C" const char *cs_dicomnet_assoc_calling_aet(const cs_dicomnet_assoc *a)
{
    return a->calling;
}

extern "C" const char *cs_dicomnet_assoc_peer_host(const cs_dicomnet_assoc *a)
{
    return a->host;
}

extern "C" void cs_dicomnet_assoc_free(cs_dicomnet_assoc *a)
{
    if (!a)
        return;
    try {
        if (a->assoc) {
            if (a->scu) {
                OFCondition c = ASC_releaseAssociation(a->assoc);
                if (c.bad())
                    ASC_abortAssociation(a->assoc);
            }
            ASC_dropSCPAssociation(a->assoc, 1);
            ASC_destroyAssociation(&a->assoc);
        }
        if (a->net)
            ASC_dropNetwork(&a->net);
    } catch (...) {
    }
    free(a);
}

/* ------------------------------------------------------------------ SCU */

extern "C" int cs_dicomnet_connect(cs_dicomnet_assoc **out, const cs_dicomnet_peer *peer,
                                   const cs_dicomnet_connect_opts *o)
{
    *out = NULL;
    init();
    cs_dicomnet_assoc *a = assoc_new();
    if (!a)
        return cs_error_set(CS_ENOMEM, "out of memory");
    a->scu = 1;
    a->timeout = o->timeout_s > 0 ? o->timeout_s : 30;
    copy(a->calling, sizeof(a->calling), o->calling_aet ? o->calling_aet : "CONSILIUM");
    copy(a->host, sizeof(a->host), peer->host);
    T_ASC_Parameters *params = NULL;
    try {
        OFCondition c = ASC_initializeNetwork(NET_REQUESTOR, 0, a->timeout, &a->net);
        if (c.bad()) {
            cs_dicomnet_assoc_free(a);
            return cond_error(CS_EIO, "DICOM network", c);
        }
        c = ASC_createAssociationParameters(&params, 116794);
        if (c.bad()) {
            cs_dicomnet_assoc_free(a);
            return cond_error(CS_ENOMEM, "association parameters", c);
        }
        ASC_setAPTitles(params, a->calling, peer->aet, NULL);
        char addr[300];
        snprintf(addr, sizeof(addr), "%s:%d", peer->host, peer->port);
        ASC_setPresentationAddresses(params, "localhost", addr);
        int id = 1;
        const char *plain[] = {UID_LittleEndianExplicitTransferSyntax,
                               UID_LittleEndianImplicitTransferSyntax};
        auto add = [&](const char *as, const char **ts, int nts) -> int {
            if (id > 255)
                return cs_error_set(CS_EINVAL, "too many presentation contexts (over 128)");
            OFCondition cc =
                ASC_addPresentationContext(params, (T_ASC_PresentationContextID)id, as, ts, nts);
            id += 2;
            return cc.good() ? 0 : cond_error(CS_EINVAL, "presentation context", cc);
        };
        int rc = 0;
        if (o->verification)
            rc = add(UID_VerificationSOPClass, plain, 2);
        if (!rc && o->find)
            rc = add(UID_FINDStudyRootQueryRetrieveInformationModel, plain, 2);
        if (!rc && o->move)
            rc = add(UID_MOVEStudyRootQueryRetrieveInformationModel, plain, 2);
        for (int i = 0; !rc && i < o->nsop_classes; i++) {
            for (int k = 0; !rc && k < o->ntransfer_syntaxes; k++) {
                const char *ts = o->transfer_syntaxes[k];
                if (!strcmp(ts, plain[0]) || !strcmp(ts, plain[1]))
                    continue;
                rc = add(o->sop_classes[i], &ts, 1);
            }
            if (!rc)
                rc = add(o->sop_classes[i], plain, 2);
        }
        if (rc) {
            ASC_destroyAssociationParameters(&params);
            cs_dicomnet_assoc_free(a);
            return rc;
        }
        c = ASC_requestAssociation(a->net, params, &a->assoc);
        if (c.bad()) {
            int code = CS_EIO;
            char why[200];
            snprintf(why, sizeof(why), "%s", c.text());
            if (c == DUL_ASSOCIATIONREJECTED) {
                T_ASC_RejectParameters rej;
                ASC_getRejectParameters(params, &rej);
                OFString s;
                ASC_printRejectParameters(s, &rej);
                snprintf(why, sizeof(why), "rejected: %s", s.c_str());
                code = CS_EPERM;
            }
            if (a->assoc)
                ASC_destroyAssociation(&a->assoc);
            else
                ASC_destroyAssociationParameters(&params);
            cs_dicomnet_assoc_free(a);
            return cs_error_set(code, "association with %s@%s:%d: %s", peer->aet, peer->host,
                                peer->port, why);
        }
        if (ASC_countAcceptedPresentationContexts(a->assoc->params) == 0) {
            a->scu = 1;
            cs_dicomnet_assoc_free(a);
            return cs_error_set(CS_EPERM, "%s@%s:%d accepted none of our presentation contexts",
                                peer->aet, peer->host, peer->port);
        }
        *out = a;
        return 0;
    } catch (const std::bad_alloc &) {
        cs_dicomnet_assoc_free(a);
        return cs_error_set(CS_ENOMEM, "out of memory");
    } catch (...) {
        cs_dicomnet_assoc_free(a);
        return cs_error_set(CS_EIO, "DCMTK failed to associate");
    }
}

extern "C" int cs_dicomnet_echo(cs_dicomnet_assoc *a, int *status)
{
    try {
        DIC_US st = 0;
        DcmDataset *detail = NULL;
        OFCondition c =
            DIMSE_echoUser(a->assoc, a->msg_id++, DIMSE_NONBLOCKING, a->timeout, &st, &detail);
        delete detail;
        if (c.bad())
            return cond_error(CS_EIO, "C-ECHO", c);
        *status = st;
        return 0;
    } catch (...) {
        return cs_error_set(CS_EIO, "DCMTK failed in C-ECHO");
    }
}

extern "C" int cs_dicomnet_ts_known(const char *ts)
{
    try {
        return DcmXfer(ts).getXfer() != EXS_Unknown;
    } catch (...) {
        return 0;
    }
}

extern "C" int cs_dicomnet_accepted(cs_dicomnet_assoc *a, const char *sop_class, const char *ts)
{
    try {
        return ASC_findAcceptedPresentationContextID(a->assoc, sop_class, ts) != 0;
    } catch (...) {
        return 0;
    }
}

extern "C" int cs_dicomnet_file_probe(const char *path, char sop_class[65], char ts[65])
{
    init();
    try {
        DcmFileFormat ff;
        OFCondition c = ff.loadFile(path, EXS_Unknown, EGL_noChange, 256, ERM_autoDetect);
        if (c.bad()) {
            struct stat st;
            return cs_error_set(stat(path, &st) ? CS_ENOTFOUND : CS_EFORMAT, "%s: %s", path,
                                c.text());
        }
        get(ff.getDataset(), DCM_SOPClassUID, sop_class, 65);
        get(ff.getMetaInfo(), DCM_TransferSyntaxUID, ts, 65);
        if (!ts[0])
            copy(ts, 65, DcmXfer(ff.getDataset()->getOriginalXfer()).getXferID());
        if (!sop_class[0])
            return cs_error_set(CS_EFORMAT, "%s: no SOP Class UID", path);
        return 0;
    } catch (...) {
        return cs_error_set(CS_EFORMAT, "%s: DCMTK failed to read it", path);
    }
}

extern "C" int cs_dicomnet_store_file(cs_dicomnet_assoc *a, const char *path, const char *want_ts,
                                      int *status, char *sent_ts)
{
    init();
    try {
        DcmFileFormat ff;
        OFCondition c = ff.loadFile(path, EXS_Unknown, EGL_noChange, 4096, ERM_autoDetect);
        if (c.bad())
            return cs_error_set(CS_EFORMAT, "%s: %s", path, c.text());
        DcmDataset *ds = ff.getDataset();
        char sop_class[65], sop_uid[65];
        get(ds, DCM_SOPClassUID, sop_class, sizeof(sop_class));
        get(ds, DCM_SOPInstanceUID, sop_uid, sizeof(sop_uid));
        if (!sop_class[0] || !sop_uid[0])
            return cs_error_set(CS_EFORMAT, "%s: no SOP Class or Instance UID", path);
        E_TransferSyntax file_xfer = ds->getOriginalXfer();
        const char *file_ts = DcmXfer(file_xfer).getXferID();
        T_ASC_PresentationContextID pid = 0;
        const char *use_ts = NULL;
        if (want_ts && strcmp(want_ts, file_ts)) {
            pid = ASC_findAcceptedPresentationContextID(a->assoc, sop_class, want_ts);
            use_ts = want_ts;
        }
        if (!pid) {
            pid = ASC_findAcceptedPresentationContextID(a->assoc, sop_class, file_ts);
            use_ts = file_ts;
        }
        if (!pid) {
            pid = ASC_findAcceptedPresentationContextID(a->assoc, sop_class,
                                                        UID_LittleEndianExplicitTransferSyntax);
            use_ts = UID_LittleEndianExplicitTransferSyntax;
        }
        if (!pid) {
            pid = ASC_findAcceptedPresentationContextID(a->assoc, sop_class,
                                                        UID_LittleEndianImplicitTransferSyntax);
            use_ts = UID_LittleEndianImplicitTransferSyntax;
        }
        if (!pid)
            return cs_error_set(CS_EINVAL, "%s: the peer accepted no context for SOP class %s",
                                path, sop_class);
        T_DIMSE_C_StoreRQ req;
        memset(&req, 0, sizeof(req));
        req.MessageID = a->msg_id++;
        OFStandard::strlcpy(req.AffectedSOPClassUID, sop_class, sizeof(req.AffectedSOPClassUID));
        OFStandard::strlcpy(req.AffectedSOPInstanceUID, sop_uid,
                            sizeof(req.AffectedSOPInstanceUID));
        req.DataSetType = DIMSE_DATASET_PRESENT;
        req.Priority = DIMSE_PRIORITY_MEDIUM;
        T_DIMSE_C_StoreRSP rsp;
        memset(&rsp, 0, sizeof(rsp));
        DcmDataset *detail = NULL;
        if (!strcmp(use_ts, file_ts)) {
            c = DIMSE_storeUser(a->assoc, pid, &req, path, NULL, NULL, NULL, DIMSE_NONBLOCKING,
                                a->timeout, &rsp, &detail);
        } else {
            E_TransferSyntax x = DcmXfer(use_ts).getXfer();
            if (x == EXS_Unknown)
                return cs_error_set(CS_EINVAL, "unknown transfer syntax %s", use_ts);
            ds->loadAllDataIntoMemory();
            c = ds->chooseRepresentation(x, NULL);
            if (c.bad() || !ds->canWriteXfer(x))
                return cs_error_set(CS_EFORMAT, "%s: cannot transcode to %s: %s", path, use_ts,
                                    c.bad() ? c.text() : "no codec");
            if (DcmXfer(x).isEncapsulated() && x != file_xfer) {
                /* A new pixel encoding: keep the instance, note the derivation
                 * only when lossy (our lossless JPEG-LS keeps every value). */
                if (x == EXS_JPEGLSLossy || x == EXS_JPEGProcess1 || x == EXS_JPEGProcess2_4)
                    ds->putAndInsertString(DCM_LossyImageCompression, "01");
            }
            c = DIMSE_storeUser(a->assoc, pid, &req, NULL, ds, NULL, NULL, DIMSE_NONBLOCKING,
                                a->timeout, &rsp, &detail);
        }
        if (c.bad()) {
            delete detail;
            return cs_error_set(CS_EIO, "C-STORE of %s: %s", path, c.text());
        }
        if (detail && rsp.DimseStatus != STATUS_Success) {
            OFString comment;
            if (detail->findAndGetOFString(DCM_ErrorComment, comment).good())
                cs_error_set(CS_EIO, "C-STORE of %s refused (0x%04x): %s", path, rsp.DimseStatus,
                             comment.c_str());
        } else if (rsp.DimseStatus != STATUS_Success) {
            cs_error_set(CS_EIO, "C-STORE of %s refused (0x%04x)", path, rsp.DimseStatus);
        }
        delete detail;
        *status = rsp.DimseStatus;
        if (sent_ts)
            copy(sent_ts, 65, use_ts);
        return 0;
    } catch (const std::bad_alloc &) {
        return cs_error_set(CS_ENOMEM, "out of memory");
    } catch (...) {
        return cs_error_set(CS_EIO, "DCMTK failed sending %s", path);
    }
}

namespace
{

void put_keys(DcmDataset &q, const char *level, const cs_dicomnet_attr *keys, int nkeys)
{
    q.putAndInsertString(DCM_QueryRetrieveLevel, level);
    for (int i = 0; i < nkeys; i++)
        q.putAndInsertString(
            DcmTag(DcmTagKey((Uint16)(keys[i].tag >> 16), (Uint16)(keys[i].tag & 0xffff))),
            keys[i].value ? keys[i].value : "");
}

struct find_user_ctx {
    cs_dicomnet_result_fn fn;
    void *userdata;
    int stop;
};

void find_user_cb(void *data, T_DIMSE_C_FindRQ *, int, T_DIMSE_C_FindRSP *, DcmDataset *ident)
{
    find_user_ctx *fc = (find_user_ctx *)data;
    if (!ident || fc->stop || !fc->fn)
        return;
    std::vector<std::string> vals;
    std::vector<cs_dicomnet_attr> attrs;
    vals.reserve(ident->card());
    for (unsigned long i = 0; i < ident->card(); i++) {
        DcmElement *e = ident->getElement(i);
        if (e->ident() == EVR_SQ)
            continue;
        OFString v;
        e->getOFStringArray(v);
        size_t len = v.length();
        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\0'))
            len--;
        vals.push_back(std::string(v.c_str(), len));
        DcmTagKey k = e->getTag();
        attrs.push_back({((uint32_t)k.getGroup() << 16) | k.getElement(), NULL});
    }
    for (size_t i = 0; i < attrs.size(); i++)
        attrs[i].value = vals[i].c_str();
    if (fc->fn(fc->userdata, attrs.data(), (int)attrs.size()))
        fc->stop = 1;
}

} // namespace

extern "C" int cs_dicomnet_find(cs_dicomnet_assoc *a, const char *level,
                                const cs_dicomnet_attr *keys, int nkeys, cs_dicomnet_result_fn fn,
                                void *userdata, int *status)
{
    try {
        T_ASC_PresentationContextID pid = ASC_findAcceptedPresentationContextID(
            a->assoc, UID_FINDStudyRootQueryRetrieveInformationModel);
        if (!pid)
            return cs_error_set(CS_EINVAL, "the peer did not accept Study Root C-FIND");
        DcmDataset q;
        put_keys(q, level, keys, nkeys);
        T_DIMSE_C_FindRQ req;
        memset(&req, 0, sizeof(req));
        req.MessageID = a->msg_id++;
        OFStandard::strlcpy(req.AffectedSOPClassUID, UID_FINDStudyRootQueryRetrieveInformationModel,
                            sizeof(req.AffectedSOPClassUID));
        req.DataSetType = DIMSE_DATASET_PRESENT;
        req.Priority = DIMSE_PRIORITY_MEDIUM;
        T_DIMSE_C_FindRSP rsp;
        memset(&rsp, 0, sizeof(rsp));
        DcmDataset *detail = NULL;
        int count = 0;
        find_user_ctx fc = {fn, userdata, 0};
        OFCondition c = DIMSE_findUser(a->assoc, pid, &req, &q, count, find_user_cb, &fc,
                                       DIMSE_NONBLOCKING, a->timeout, &rsp, &detail);
        delete detail;
        if (c.bad())
            return cond_error(CS_EIO, "C-FIND", c);
        *status = rsp.DimseStatus;
        return 0;
    } catch (const std::bad_alloc &) {
        return cs_error_set(CS_ENOMEM, "out of memory");
    } catch (...) {
        return cs_error_set(CS_EIO, "DCMTK failed in C-FIND");
    }
}

namespace
{
void move_cb(void *data, T_DIMSE_C_MoveRQ *, int, T_DIMSE_C_MoveRSP *rsp)
{
    cs_dicomnet_move_result *r = (cs_dicomnet_move_result *)data;
    r->completed = rsp->NumberOfCompletedSubOperations;
    r->failed = rsp->NumberOfFailedSubOperations;
    r->warning = rsp->NumberOfWarningSubOperations;
}
} // namespace

extern "C" int cs_dicomnet_move(cs_dicomnet_assoc *a, const char *level, const char *dest,
                                const cs_dicomnet_attr *keys, int nkeys,
                                cs_dicomnet_move_result *out)
{
    memset(out, 0, sizeof(*out));
    try {
        T_ASC_PresentationContextID pid = ASC_findAcceptedPresentationContextID(
            a->assoc, UID_MOVEStudyRootQueryRetrieveInformationModel);
        if (!pid)
            return cs_error_set(CS_EINVAL, "the peer did not accept Study Root C-MOVE");
        DcmDataset q;
        put_keys(q, level, keys, nkeys);
        T_DIMSE_C_MoveRQ req;
        memset(&req, 0, sizeof(req));
        req.MessageID = a->msg_id++;
        OFStandard::strlcpy(req.AffectedSOPClassUID, UID_MOVEStudyRootQueryRetrieveInformationModel,
                            sizeof(req.AffectedSOPClassUID));
        OFStandard::strlcpy(req.MoveDestination, dest, sizeof(req.MoveDestination));
        req.DataSetType = DIMSE_DATASET_PRESENT;
        req.Priority = DIMSE_PRIORITY_MEDIUM;
        T_DIMSE_C_MoveRSP rsp;
        memset(&rsp, 0, sizeof(rsp));
        DcmDataset *detail = NULL, *ids = NULL;
        OFCondition c = DIMSE_moveUser(a->assoc, pid, &req, &q, move_cb, out, DIMSE_NONBLOCKING,
                                       a->timeout * 10, NULL, NULL, NULL, &rsp, &detail, &ids);
        delete detail;
        delete ids;
        if (c.bad())
            return cond_error(CS_EIO, "C-MOVE", c);
        out->status = rsp.DimseStatus;
        if (rsp.opts & O_MOVE_NUMBEROFCOMPLETEDSUBOPERATIONS)
            out->completed = rsp.NumberOfCompletedSubOperations;
        if (rsp.opts & O_MOVE_NUMBEROFFAILEDSUBOPERATIONS)
            out->failed = rsp.NumberOfFailedSubOperations;
        if (rsp.opts & O_MOVE_NUMBEROFWARNINGSUBOPERATIONS)
            out->warning = rsp.NumberOfWarningSubOperations;
        return 0;
    } catch (const std::bad_alloc &) {
        return cs_error_set(CS_ENOMEM, "out of memory");
    } catch (...) {
        return cs_error_set(CS_EIO, "DCMTK failed in C-MOVE");
    }
}
