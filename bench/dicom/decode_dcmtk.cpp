// decode_dcmtk: DCMTK 3.6.7's own in-process decode, the anchor of
// bench-dicom-decode.
//
//   decode_dcmtk FILE RUNS
//
// Each run: DcmFileFormat::read from the in-memory file, then
// - compressed syntaxes: chooseRepresentation(EXS_LittleEndianExplicit) with
//   DCMTK's JPEG, JPEG-LS and RLE decoders registered, and the pixel array
//   fetched;
// - native syntaxes (where chooseRepresentation has nothing to do and the
//   parsed value is used in place): a DicomImage with
//   CIF_IgnoreModalityTransformation, which, like cs_dicom_frames_decode,
//   copies the stored values of all frames out, masked to Bits Stored.
// The dataset is destroyed inside the timing (cs_dicom_free is timed too).
// Prints one JSON object like decode_bench; {"error": ...} when DCMTK
// cannot decode the syntax (JPEG 2000, HTJ2K).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmimgle/dcmimage.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>
#include <fstream>
#include <iterator>
#include <vector>

int main(int argc, char **argv)
{
    if (argc < 3) {
        std::fprintf(stderr, "usage: decode_dcmtk FILE RUNS\n");
        return 2;
    }
    int runs = std::max(1, (int)std::strtol(argv[2], nullptr, 10));
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
    std::ifstream f(argv[1], std::ios::binary);
    std::vector<char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<double> ms;
    double mpix = 0;
    const char *method = "chooseRepresentation";
    for (int r = 0; r < runs; r++) {
        auto t0 = std::chrono::steady_clock::now();
        OFCondition c;
        {
            DcmFileFormat ff;
            DcmInputBufferStream is;
            is.setBuffer(data.data(), (offile_off_t)data.size());
            is.setEos();
            ff.transferInit();
            c = ff.read(is);
            ff.transferEnd();
            DcmDataset *ds = ff.getDataset();
            E_TransferSyntax xfer = ds->getOriginalXfer();
            DcmXfer x(xfer);
            if (c.good() && !x.isEncapsulated()) {
                method = "DicomImage";
                DicomImage img(ds, xfer, CIF_IgnoreModalityTransformation);
                if (img.getStatus() != EIS_Normal || !img.getInterData())
                    c = EC_IllegalCall;
            } else {
                if (c.good())
                    c = ds->chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
                const Uint8 *px = nullptr;
                if (c.good())
                    c = ds->findAndGetUint8Array(DCM_PixelData, px);
            }
            Uint16 rows = 0, cols = 0;
            Sint32 frames = 1;
            ds->findAndGetUint16(DCM_Rows, rows);
            ds->findAndGetUint16(DCM_Columns, cols);
            if (ds->findAndGetSint32(DCM_NumberOfFrames, frames).bad() || frames < 1)
                frames = 1;
            mpix = (double)rows * cols * frames / 1e6;
        }
        auto t1 = std::chrono::steady_clock::now();
        if (c.bad()) {
            std::printf("{\"error\": \"%s\"}\n", c.text());
            return 0;
        }
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    std::printf("{\"median_ms\": %.3f, \"min_ms\": %.3f, \"mpix\": %.4f, \"runs\": %d, "
                "\"method\": \"%s\"}\n",
                ms[ms.size() / 2], ms[0], mpix, runs, method);
    DJDecoderRegistration::cleanup();
    DJLSDecoderRegistration::cleanup();
    DcmRLEDecoderRegistration::cleanup();
    return 0;
}
