/* dicom_tool: cs_dicom from the command line, for the Python tests and the
 * bench. Writes decoded frames and renders as raw files.
 *
 *   dicom_tool info FILE                  key=value lines of cs_dicom_info
 *   dicom_tool decode FILE OUT [THREADS]  all frames, raw (cs_dicom_frames_decode)
 *   dicom_tool render FILE OUT [C W]      frame 0 as PGM/PPM (the file's window, or C/W)
 *   dicom_tool transcode FILE OUT [TS [Q]]  re-encode, save
 *   dicom_tool deid FILE OUT              de-identify, save
 *   dicom_tool json FILE                  DICOM JSON to stdout
 *   dicom_tool get FILE GGGGEEEE          one attribute's string
 *
 * Exit status 0 on success, 1 on a cs_dicom error (message on stderr). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs/dicom.h"
#include "cs/err.h"

static int fail(const char *what, int rc)
{
    fprintf(stderr, "%s: %s (%s)\n", what, cs_error_last(), cs_strerror(rc));
    return 1;
}

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(p, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: dicom_tool info|decode|render|transcode|deid|json|get FILE ...\n");
        return 2;
    }
    const char *cmd = argv[1];
    cs_dicom *d = NULL;
    int rc = cs_dicom_open(&d, argv[2]);
    if (rc)
        return fail("open", rc);
    cs_dicom_info in;
    cs_dicom_get_info(d, &in);
    int status = 0;
    if (strcmp(cmd, "info") == 0) {
        printf("transfer_syntax=%s\nphotometric=%s\nrows=%d\ncols=%d\nframes=%d\nsamples=%d\n"
               "bits_allocated=%d\nbits_stored=%d\npixel_signed=%d\nplanar=%d\nlossy=%d\n"
               "slope=%.17g\nintercept=%.17g\nhas_window=%d\nwindow_center=%.17g\n"
               "window_width=%.17g\nhas_modality_lut=%d\nhas_voi_lut=%d\nframe_size=%zu\n"
               "sop_instance_uid=%s\nmodality=%s\n",
               in.transfer_syntax, in.photometric, in.rows, in.cols, in.frames, in.samples,
               in.bits_allocated, in.bits_stored, in.pixel_signed, in.planar, in.lossy, in.slope,
               in.intercept, in.has_window, in.window_center, in.window_width, in.has_modality_lut,
               in.has_voi_lut, cs_dicom_frame_size(&in), in.sop_instance_uid, in.modality);
    } else if (strcmp(cmd, "decode") == 0 && argc >= 4) {
        size_t fs = cs_dicom_frame_size(&in);
        size_t total = fs * (size_t)in.frames;
        uint8_t *buf = malloc(total ? total : 1);
        int threads = argc >= 5 ? (int)strtol(argv[4], NULL, 10) : 0;
        rc = buf ? cs_dicom_frames_decode(d, 0, in.frames, buf, total, threads) : CS_ENOMEM;
        if (rc)
            status = fail("decode", rc);
        else if (write_file(argv[3], buf, total) != 0)
            status = fail("write", CS_EIO);
        free(buf);
    } else if (strcmp(cmd, "render") == 0 && argc >= 4) {
        cs_dicom_window w = {0, 0};
        if (argc >= 6) {
            w.center = strtod(argv[4], NULL);
            w.width = strtod(argv[5], NULL);
        }
        size_t cap = (size_t)in.rows * in.cols * 3;
        uint8_t *buf = malloc(cap ? cap : 1);
        int ch = 0;
        rc = buf ? cs_dicom_render(d, 0, &w, buf, (size_t)in.cols * 3, cap, &ch) : CS_ENOMEM;
        if (rc == 0) {
            /* compact rows to cols*ch */
            for (int r = 1; r < in.rows; r++)
                memmove(buf + (size_t)r * in.cols * ch, buf + (size_t)r * in.cols * 3,
                        (size_t)in.cols * ch);
            FILE *f = fopen(argv[3], "wb");
            if (!f) {
                status = fail("write", CS_EIO);
            } else {
                fprintf(f, "P%d\n%d %d\n255\n", ch == 1 ? 5 : 6, in.cols, in.rows);
                fwrite(buf, 1, (size_t)in.rows * in.cols * ch, f);
                fclose(f);
            }
        } else {
            status = fail("render", rc);
        }
        free(buf);
    } else if (strcmp(cmd, "transcode") == 0 && argc >= 4) {
        cs_dicom_transcode_opts o = CS_DICOM_TRANSCODE_OPTS_INIT;
        if (argc >= 5 && strcmp(argv[4], "-") != 0)
            o.transfer_syntax = argv[4];
        if (argc >= 6)
            o.quality = (int)strtol(argv[5], NULL, 10);
        rc = cs_dicom_transcode(d, &o);
        if (rc == 0)
            rc = cs_dicom_save(d, argv[3]);
        if (rc)
            status = fail("transcode", rc);
    } else if (strcmp(cmd, "deid") == 0 && argc >= 4) {
        rc = cs_dicom_deidentify(d);
        if (rc == 0)
            rc = cs_dicom_save(d, argv[3]);
        if (rc)
            status = fail("deid", rc);
    } else if (strcmp(cmd, "json") == 0) {
        cs_buf *b = NULL;
        rc = cs_dicom_to_json(d, &b);
        if (rc)
            status = fail("json", rc);
        else
            fwrite(cs_buf_data(b), 1, cs_buf_size(b), stdout);
        cs_buf_unref(b);
    } else if (strcmp(cmd, "get") == 0 && argc >= 4) {
        char s[4096];
        uint32_t tag = (uint32_t)strtoul(argv[3], NULL, 16);
        rc = cs_dicom_get_string(d, tag, s, sizeof s);
        if (rc)
            status = fail("get", rc);
        else
            printf("%s\n", s);
    } else {
        fprintf(stderr, "dicom_tool: bad command\n");
        status = 2;
    }
    cs_dicom_free(d);
    return status;
}
