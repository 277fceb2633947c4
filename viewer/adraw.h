/* viewer/adraw: draws the annotations, the shape being drawn, the tool bar
 * and the editor's status message over the composed frame with an
 * SDL_Renderer (the window's, or the software renderer of the headless
 * surface).
 *
 * Each shape in its colour, 2 px wide, with "author: label" next to it; the
 * ruler with its length (µm or mm from the slide's MPP, px without one),
 * live while it is drawn; the selected shape with its handles and, when
 * closed, its area. Render thread only. */
#ifndef VW_ADRAW_H
#define VW_ADRAW_H

#include <SDL.h>

#include "annot.h"
#include "edit.h"
#include "overlay.h"
#include "render.h"

/** @param toolbar draw the tool bar too. */
void vw_adraw(SDL_Renderer *ren, vw_overlay *ov, const vw_edit *e, const vw_view *v, int toolbar);
/** The tool under window point (@p x, @p y) on the tool bar of a window
 *  @p w wide, or -1. */
int vw_adraw_toolbar_hit(int w, int x, int y);
/** "12.3 µm", "1.234 mm", "12.3 px" (@p um < 0: no MPP, @p px used). */
void vw_adraw_format_length(char *out, size_t n, double um, double px);
void vw_adraw_format_area(char *out, size_t n, double um2, double px2);

#endif
