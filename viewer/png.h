/* viewer/png: write a frame as an 8-bit RGB PNG with libpng. */
#ifndef VW_PNG_H
#define VW_PNG_H

#include <stdint.h>

/** Write @p w x @p h XRGB8888 pixels (@p pitch pixels per row) to @p path.
 *  @return 0, or CS_EIO / CS_ENOMEM with the message set. */
int vw_png_write(const char *path, const uint32_t *px, int w, int h, int pitch);

#endif
