/* libFuzzer target for cs_dicom's parsing wrapper: open_mem, get_info,
 * frame_decode and render on whatever the fuzzer makes of corpus files.
 * Built by run_fuzz.sh with clang -fsanitize=fuzzer,address. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "cs/dicom.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cs_dicom *d = NULL;
    if (cs_dicom_open_mem(&d, data, size) != 0)
        return 0;
    cs_dicom_info in;
    cs_dicom_get_info(d, &in);
    size_t fs = cs_dicom_frame_size(&in);
    /* Geometry is checked at open, but a mutated header may still declare a
     * large image: decoding then costs time, not correctness. */
    if (fs > 0 && fs <= (64u << 20)) {
        uint8_t *buf = malloc(fs);
        size_t rcap = (size_t)in.rows * in.cols * 3;
        uint8_t *img = malloc(rcap);
        int frames = in.frames < 3 ? in.frames : 3;
        for (int f = 0; buf && img && f < frames; f++) {
            cs_dicom_frame_decode(d, f, buf, fs);
            int ch = 0;
            cs_dicom_window w = {0, 0};
            cs_dicom_render(d, f, &w, img, (size_t)in.cols * 3, rcap, &ch);
        }
        free(img);
        free(buf);
    }
    cs_buf *j = NULL;
    if (cs_dicom_to_json(d, &j) == 0)
        cs_buf_unref(j);
    cs_dicom_free(d);
    return 0;
}
