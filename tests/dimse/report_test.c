/* cs_dicom_report_new / cs_dicom_report_write: the consultant's reading as
 * a Basic Text SR in the study of a real CT instance. */
/* cmocka needs these first, in this order */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cs/buf.h"
#include "cs/dicom.h"
#include "cs/err.h"

static char ct_path[4096];

static void report__new_in_the_study(void **state)
{
    cs_dicom *ref = NULL, *sr = NULL;
    assert_int_equal(cs_dicom_open(&ref, ct_path), 0);
    cs_dicom_info ri, si;
    cs_dicom_get_info(ref, &ri);
    cs_dicom_ref key = {ri.sop_class_uid, ri.sop_instance_uid, ri.series_uid};
    int r =
        cs_dicom_report_new(&sr, ref, "Consult", "No acute findings.", "Reader^Remote", &key, 1);
    if (r < 0)
        fail_msg("cs_dicom_report_new: %s", cs_error_last());
    cs_dicom_get_info(sr, &si);
    assert_string_equal(si.sop_class_uid, "1.2.840.10008.5.1.4.1.1.88.11");
    assert_string_equal(si.study_uid, ri.study_uid);
    assert_string_not_equal(si.series_uid, ri.series_uid);
    assert_string_not_equal(si.sop_instance_uid, ri.sop_instance_uid);
    assert_string_equal(si.modality, "SR");
    char pid[80], ref_pid[80];
    assert_int_equal(cs_dicom_get_string(sr, CS_DICOM_TAG(0x0010, 0x0020), pid, sizeof(pid)), 0);
    assert_int_equal(
        cs_dicom_get_string(ref, CS_DICOM_TAG(0x0010, 0x0020), ref_pid, sizeof(ref_pid)), 0);
    assert_string_equal(pid, ref_pid);
    cs_dicom_free(sr);
    cs_dicom_free(ref);
}

static void report__refuses_empty_text(void **state)
{
    cs_dicom *ref = NULL, *sr = NULL;
    assert_int_equal(cs_dicom_open(&ref, ct_path), 0);
    assert_int_equal(cs_dicom_report_new(&sr, ref, "t", "", "a", NULL, 0), CS_EINVAL);
    assert_null(sr);
    cs_dicom_free(ref);
}

static void report__write_file(void **state)
{
    char out[] = "/tmp/cs-report-test-XXXXXX";
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    close(fd);
    char uid[65] = "";
    assert_int_equal(cs_dicom_report_write(out, ct_path, "t", "text", NULL, NULL, 0, uid), 0);
    cs_dicom *sr = NULL;
    assert_int_equal(cs_dicom_open(&sr, out), 0);
    cs_dicom_info si;
    cs_dicom_get_info(sr, &si);
    assert_string_equal(si.sop_instance_uid, uid);
    cs_dicom_free(sr);
    unlink(out);
    assert_int_equal(cs_dicom_report_write(out, "/nonexistent.dcm", "t", "x", NULL, NULL, 0, NULL),
                     CS_EFORMAT);
}

int main(void)
{
    const char *td = getenv("CS_TESTDATA");
    snprintf(ct_path, sizeof(ct_path), "%s/dicom/CT_small.dcm", td ? td : "../shared/testdata");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(report__new_in_the_study),
        cmocka_unit_test(report__refuses_empty_text),
        cmocka_unit_test(report__write_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
