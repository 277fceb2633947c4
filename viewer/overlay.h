/* viewer/overlay: scale bar, slide name and status line, drawn with an
 * SDL_Renderer over the composed frame. Text uses SDL2_ttf with DejaVu Sans;
 * without the font, text is left out (the scale bar is still drawn).
 * Render thread only. */
#ifndef VW_OVERLAY_H
#define VW_OVERLAY_H

#include <stdint.h>

#include <SDL.h>

typedef struct vw_overlay vw_overlay;

typedef struct {
    const char *name; /**< slide name */
    double mpp;       /**< microns per level-0 pixel; <= 0 when unknown */
    double zoom;      /**< screen px per level-0 px */
    int level, nlevels;
    int in_flight;
    int failed; /**< tiles that failed so far */
} vw_overlay_info;

/** @param font_path TTF file; when it cannot be loaded, text is disabled
 *  and a warning is logged once. @return 0 or CS_ENOMEM. */
int vw_overlay_new(vw_overlay **out, SDL_Renderer *ren, const char *font_path);
void vw_overlay_free(vw_overlay *o);
/** Whether text can be drawn. */
int vw_overlay_has_text(const vw_overlay *o);
void vw_overlay_draw(vw_overlay *o, int w, int h, const vw_overlay_info *info);

/** Draw @p str with its top-left corner at (@p x, @p y) in colour
 *  @p rgb (0xRRGGBB) on a translucent dark box; text textures are cached
 *  (a few dozen, least recently drawn replaced). @return the text's width
 *  (0 without a font). */
int vw_overlay_label(vw_overlay *o, const char *str, int x, int y, uint32_t rgb);
/** Height of a text line in pixels (16 without a font). */
int vw_overlay_line_height(const vw_overlay *o);

/** The scale bar for @p mpp and @p zoom: a round length (1, 2, 5 x 10^k µm)
 *  whose bar is at most @p max_px long. @return the bar length in screen
 *  pixels (0 if none), the length in µm in @p um. */
double vw_overlay_scale_bar(double mpp, double zoom, double max_px, double *um);

#endif
