/* viewer/input: turns SDL events into view changes (window mode).
 *
 * Drag pans, the wheel zooms about the cursor, arrow keys pan by an eighth
 * of the window, + and - zoom about the centre, Home fits the whole slide,
 * O toggles the overlays, Q quits (Escape belongs to the annotation editor,
 * edit.h). Render thread only. */
#ifndef VW_INPUT_H
#define VW_INPUT_H

#include <SDL.h>

#include "geom.h"
#include "render.h"

typedef struct {
    int dragging;
    int last_x, last_y;
    int quit;
    int overlays; /**< toggled by O */
} vw_input;

/** Apply @p ev to @p v. @return 1 when the view (or what is drawn) changed. */
int vw_input_handle(vw_input *in, const SDL_Event *ev, vw_view *v, const vw_geom *g);

#endif
