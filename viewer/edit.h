/* viewer/edit: the annotation tools. Turns SDL events (mouse in window
 * pixels, keys, text input) into new, changed and deleted annotations.
 *
 * Tools: select (default; click a shape to select it, drag it to move it,
 * drag a handle of the selected shape to reshape it, drag empty space to
 * pan: the event is left to input.c), point, ruler (line), rectangle,
 * ellipse, polygon (click vertices; double-click or Enter closes, Esc
 * cancels), freehand (drag; closed on release), text (click, type, Enter).
 * Keys: S V select, P L R E G F T the tools, Delete/Backspace deletes the
 * selection, N types a new label for it, C cycles its class (the palette of
 * annot.h), Esc cancels what is being drawn or typed, else goes back to
 * select, else drops the selection.
 *
 * Every change is reported through `changed` (after the annotation list is
 * updated; for deletions before the annotation is removed). A screen point
 * (X, Y) is level-0 point (view.x + X / zoom, view.y + Y / zoom).
 * Render thread only. */
#ifndef VW_EDIT_H
#define VW_EDIT_H

#include <stdint.h>

#include <SDL.h>

#include "cs/common.h"

#include "annot.h"
#include "render.h"

typedef enum {
    VW_TOOL_SELECT,
    VW_TOOL_POINT,
    VW_TOOL_LINE,
    VW_TOOL_RECT,
    VW_TOOL_ELLIPSE,
    VW_TOOL_POLYGON,
    VW_TOOL_FREEHAND,
    VW_TOOL_TEXT,
    VW_TOOL_N
} vw_tool;

enum { VW_EDIT_CREATED = 1, VW_EDIT_UPDATED, VW_EDIT_DELETED };
/* vw_edit.typing: where typed text goes */
enum { VW_TYPING_NONE, VW_TYPING_TEXT, VW_TYPING_LABEL };
/* vw_edit_handle() result bits */
enum { VW_EDIT_CONSUMED = 1, VW_EDIT_DIRTY = 2 };

typedef struct {
    vw_annots *annots;
    vw_tool tool;
    uint64_t sel;       /**< key of the selected annotation, 0 none */
    vw_annot *draft;    /**< shape being drawn (not in the list yet) */
    int drag;           /**< what the left button drags */
    int handle;         /**< handle being dragged */
    double lx, ly;      /**< level-0 point under the mouse at the last event */
    double hx, hy;      /**< mouse position, screen (polygon rubber band) */
    int moved;          /**< the drag changed the shape */
    int typing;         /**< 0, or what typed text goes to (text / label) */
    char text[256];     /**< typed so far */
    const char *author; /**< author of new annotations (borrowed) */
    char status[200];   /**< transient message, shown until status_until */
    int64_t status_until;
    void (*changed)(void *userdata, vw_annot *a, int op);
    void *userdata;
} vw_edit;

void vw_edit_init(vw_edit *e, vw_annots *annots, const char *author);
void vw_edit_free(vw_edit *e);
/** @return VW_EDIT_CONSUMED when input.c must not see the event too, and
 *  VW_EDIT_DIRTY when the drawing changed. */
int vw_edit_handle(vw_edit *e, const SDL_Event *ev, const vw_view *v);
/** Select @p tool (cancels a shape being drawn). */
void vw_edit_set_tool(vw_edit *e, vw_tool tool);
/** @return the tool or -1 ("select", "point", "line"/"ruler", "rect"/"rectangle",
 *  "ellipse", "polygon", "freehand", "text"). */
int vw_edit_tool_parse(const char *name);
const char *vw_edit_tool_name(vw_tool t);
/** Show @p msg for a few seconds. */
void vw_edit_status(vw_edit *e, const char *fmt, ...) CS_PRINTF(2, 3);
/** The selected annotation or NULL. */
vw_annot *vw_edit_selected(const vw_edit *e);

#endif
