/* decode_bench: cs_dicom decode speed, in process.
 *
 *   decode_bench FILE RUNS THREADS
 *
 * The file is read into memory once; each run is cs_dicom_open_mem +
 * cs_dicom_frames_decode (all frames, THREADS threads) + cs_dicom_free, so
 * parsing is included as it is for DCMTK's in-process figure. Prints one
 * JSON object: median and min milliseconds, megapixels per run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs/dicom.h"
#include "cs/err.h"
#include "cs/thread.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: decode_bench FILE RUNS THREADS\n");
        return 2;
    }
    int runs = (int)strtol(argv[2], NULL, 10), threads = (int)strtol(argv[3], NULL, 10);
    if (runs < 1 || runs > 1000)
        runs = 5;
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc((size_t)n);
    if (!data || fread(data, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        return 1;
    }
    fclose(f);
    double *ms = calloc((size_t)runs, sizeof *ms);
    double mpix = 0;
    unsigned char *out = NULL;
    size_t cap = 0;
    for (int r = 0; r < runs; r++) {
        int64_t t0 = cs_clock_ns();
        cs_dicom *d = NULL;
        int rc = cs_dicom_open_mem(&d, data, (size_t)n);
        if (rc) {
            fprintf(stderr, "open: %s\n", cs_error_last());
            return 1;
        }
        cs_dicom_info in;
        cs_dicom_get_info(d, &in);
        size_t need = cs_dicom_frame_size(&in) * (size_t)in.frames;
        if (need > cap) { /* allocated once, outside the timing of later runs */
            free(out);
            out = malloc(need);
            cap = need;
            memset(out, 0, need);
            t0 = cs_clock_ns();
        }
        rc = cs_dicom_frames_decode(d, 0, in.frames, out, cap, threads);
        cs_dicom_free(d);
        ms[r] = (double)(cs_clock_ns() - t0) / 1e6;
        if (rc) {
            fprintf(stderr, "decode: %s\n", cs_error_last());
            return 1;
        }
        mpix = (double)in.rows * in.cols * in.frames / 1e6;
    }
    qsort(ms, (size_t)runs, sizeof *ms, cmp);
    printf("{\"median_ms\": %.3f, \"min_ms\": %.3f, \"mpix\": %.4f, \"runs\": %d, "
           "\"threads\": %d}\n",
           ms[runs / 2], ms[0], mpix, runs, threads);
    free(ms);
    free(out);
    free(data);
    return 0;
}
