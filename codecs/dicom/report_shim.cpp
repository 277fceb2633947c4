/* The consultant's reading as a DICOM Basic Text SR (DCMTK dcmsr).
 *
 * Content tree: CONTAINER "Radiology Report" (LOINC 11528-7)
 *   HAS OBS CONTEXT PNAME "Person Observer Name" (DCM 121008) = author
 *   CONTAINS TEXT "Conclusion" (DCM 121077) = text
 *   CONTAINS IMAGE (one per key image)
 * Patient and study modules come from the reference instance; the report
 * gets a new series (Modality SR) and SOP Instance UID, and its key images
 * are listed in the Current Requested Procedure Evidence Sequence.
 *
 * cs_dicom_report_write() works on files and needs nothing else of
 * codecs/dicom; cs_dicom_report_new() goes through cs_dicom_save_mem() and
 * cs_dicom_open_mem() (built only where the cs_dicom library is, i.e. not
 * with CS_REPORT_FILE_ONLY). */
#include <stdio.h>
#include <string.h>

#include <new>
#include <string>

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/dsrdoc.h"

extern "C" {
#include "cs/dicom.h"
#include "cs/err.h"
}

namespace
{

OFString str(DcmItem *ds, const DcmTagKey &tag)
{
    OFString v;
    ds->findAndGetOFStringArray(tag, v);
    return v;
}

/* Build the report for @p ref into @p out. @return 0 or CS_E*. */
int build(DcmFileFormat &out, DcmItem *ref, const char *title, const char *text, const char *author,
          const cs_dicom_ref *keys, int nkeys, std::string &sop_uid)
{
    OFString study = str(ref, DCM_StudyInstanceUID);
    if (study.empty())
        return cs_error_set(CS_EINVAL, "the reference instance has no Study Instance UID");
    if (!text || !*text)
        return cs_error_set(CS_EINVAL, "a report needs its conclusion text");
    DSRDocument doc(DSRTypes::DT_BasicTextSR);
    OFCondition c = doc.createNewSeriesInStudy(study);
    doc.setSpecificCharacterSetType(DSRTypes::CS_UTF8);
    doc.setPatientName(str(ref, DCM_PatientName), OFFalse);
    doc.setPatientID(str(ref, DCM_PatientID), OFFalse);
    doc.setPatientBirthDate(str(ref, DCM_PatientBirthDate), OFFalse);
    doc.setPatientSex(str(ref, DCM_PatientSex), OFFalse);
    doc.setReferringPhysicianName(str(ref, DCM_ReferringPhysicianName), OFFalse);
    doc.setStudyID(str(ref, DCM_StudyID), OFFalse);
    doc.setAccessionNumber(str(ref, DCM_AccessionNumber), OFFalse);
    doc.setStudyDescription(str(ref, DCM_StudyDescription), OFFalse);
    doc.setSeriesDescription(title && *title ? title : "Consult report", OFFalse);
    doc.setManufacturer("Consilium", OFFalse);
    doc.setSeriesNumber("999", OFFalse);
    doc.setInstanceNumber("1", OFFalse);
    DSRDocumentTree &tree = doc.getTree();
    if (c.good() && tree.addContentItem(DSRTypes::RT_isRoot, DSRTypes::VT_Container) == 0)
        c = EC_IllegalCall;
    if (c.good())
        c = tree.getCurrentContentItem().setConceptName(
            DSRCodedEntryValue("11528-7", "LN", "Radiology Report"));
    if (c.good() && author && *author) {
        if (tree.addContentItem(DSRTypes::RT_hasObsContext, DSRTypes::VT_PName,
                                DSRTypes::AM_belowCurrent) == 0)
            c = EC_IllegalCall;
        if (c.good())
            c = tree.getCurrentContentItem().setConceptName(
                DSRCodedEntryValue("121008", "DCM", "Person Observer Name"));
        if (c.good())
            c = tree.getCurrentContentItem().setStringValue(author, OFFalse);
        if (c.good() && tree.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Text,
                                            DSRTypes::AM_afterCurrent) == 0)
            c = EC_IllegalCall;
    } else if (c.good() && tree.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Text,
                                               DSRTypes::AM_belowCurrent) == 0) {
        c = EC_IllegalCall;
    }
    if (c.good())
        c = tree.getCurrentContentItem().setConceptName(
            DSRCodedEntryValue("121077", "DCM", "Conclusion"));
    if (c.good())
        c = tree.getCurrentContentItem().setStringValue(text, OFFalse);
    for (int i = 0; c.good() && i < nkeys; i++) {
        if (!keys[i].sop_class_uid || !keys[i].sop_instance_uid)
            return cs_error_set(CS_EINVAL, "key image %d lacks its SOP class or instance", i);
        if (tree.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Image,
                                DSRTypes::AM_afterCurrent) == 0) {
            c = EC_IllegalCall;
            break;
        }
        c = tree.getCurrentContentItem().setImageReference(
            DSRImageReferenceValue(keys[i].sop_class_uid, keys[i].sop_instance_uid), OFFalse);
        if (c.good())
            c = doc.getCurrentRequestedProcedureEvidence().addItem(
                study, keys[i].series_uid ? keys[i].series_uid : "", keys[i].sop_class_uid,
                keys[i].sop_instance_uid, OFFalse);
    }
    if (c.good())
        c = doc.completeDocument();
    DcmDataset *ds = out.getDataset();
    if (c.good())
        c = doc.write(*ds);
    if (c.bad())
        return cs_error_set(CS_EFORMAT, "cannot make the report: %s", c.text());
    /* The study's own date and time, not today's. */
    OFString v = str(ref, DCM_StudyDate);
    if (!v.empty())
        ds->putAndInsertString(DCM_StudyDate, v.c_str());
    v = str(ref, DCM_StudyTime);
    if (!v.empty())
        ds->putAndInsertString(DCM_StudyTime, v.c_str());
    sop_uid = str(ds, DCM_SOPInstanceUID).c_str();
    return 0;
}

} // namespace

extern "C" int cs_dicom_report_write(const char *out_path, const char *ref_path, const char *title,
                                     const char *text, const char *author, const cs_dicom_ref *keys,
                                     int nkeys, char *sop_uid)
{
    try {
        DcmFileFormat ref;
        OFCondition c = ref.loadFile(ref_path, EXS_Unknown, EGL_noChange, 4096);
        if (c.bad())
            return cs_error_set(CS_EFORMAT, "%s: %s", ref_path, c.text());
        DcmFileFormat out;
        std::string uid;
        int r = build(out, ref.getDataset(), title, text, author, keys, nkeys, uid);
        if (r < 0)
            return r;
        std::string tmp = std::string(out_path) + ".tmp";
        c = out.saveFile(tmp.c_str(), EXS_LittleEndianExplicit);
        if (c.bad() || rename(tmp.c_str(), out_path) != 0) {
            remove(tmp.c_str());
            return cs_error_set(CS_EIO, "cannot write %s: %s", out_path,
                                c.bad() ? c.text() : "rename failed");
        }
        if (sop_uid)
            snprintf(sop_uid, 65, "%s", uid.c_str());
        return 0;
    } catch (const std::bad_alloc &) {
        return cs_error_set(CS_ENOMEM, "out of memory");
    } catch (...) {
        return cs_error_set(CS_EFORMAT, "DCMTK failed making the report");
    }
}

#ifndef CS_REPORT_FILE_ONLY
extern "C" int cs_dicom_report_new(cs_dicom **out, cs_dicom *ref, const char *title,
                                   const char *text, const char *author, const cs_dicom_ref *keys,
                                   int nkeys)
{
    *out = NULL;
    cs_buf *in = NULL;
    int r = cs_dicom_save_mem(ref, &in);
    if (r < 0)
        return r;
    try {
        DcmInputBufferStream is;
        is.setBuffer(cs_buf_data(in), (offile_off_t)cs_buf_size(in));
        is.setEos();
        DcmFileFormat reff;
        reff.transferInit();
        OFCondition c = reff.read(is);
        reff.transferEnd();
        cs_buf_unref(in);
        in = NULL;
        if (c.bad())
            return cs_error_set(CS_EFORMAT, "the reference instance: %s", c.text());
        DcmFileFormat rep;
        std::string uid;
        r = build(rep, reff.getDataset(), title, text, author, keys, nkeys, uid);
        if (r < 0)
            return r;
        rep.validateMetaInfo(EXS_LittleEndianExplicit);
        Uint32 len = rep.calcElementLength(EXS_LittleEndianExplicit, EET_ExplicitLength) + 1024;
        std::string buf(len, '\0');
        DcmOutputBufferStream os(&buf[0], len);
        rep.transferInit();
        c = rep.write(os, EXS_LittleEndianExplicit, EET_ExplicitLength, NULL);
        rep.transferEnd();
        if (c.bad())
            return cs_error_set(CS_EFORMAT, "cannot encode the report: %s", c.text());
        void *p = NULL;
        offile_off_t n = 0;
        os.flushBuffer(p, n);
        return cs_dicom_open_mem(out, p, (size_t)n);
    } catch (const std::bad_alloc &) {
        cs_buf_unref(in);
        return cs_error_set(CS_ENOMEM, "out of memory");
    } catch (...) {
        cs_buf_unref(in);
        return cs_error_set(CS_EFORMAT, "DCMTK failed making the report");
    }
}
#endif
