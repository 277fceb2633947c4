/* viewer/input: see input.h. */
#include "input.h"

#include <math.h>

#define WHEEL_STEP 1.25 /* zoom factor per wheel notch */
#define KEY_STEP   1.5  /* zoom factor per +/- press */

int vw_input_handle(vw_input *in, const SDL_Event *ev, vw_view *v, const vw_geom *g)
{
    switch (ev->type) {
    case SDL_QUIT:
        in->quit = 1;
        return 0;
    case SDL_MOUSEBUTTONDOWN:
        if (ev->button.button == SDL_BUTTON_LEFT) {
            in->dragging = 1;
            in->last_x = ev->button.x;
            in->last_y = ev->button.y;
        }
        return 0;
    case SDL_MOUSEBUTTONUP:
        if (ev->button.button == SDL_BUTTON_LEFT)
            in->dragging = 0;
        return 0;
    case SDL_MOUSEMOTION:
        if (!in->dragging)
            return 0;
        v->x -= (ev->motion.x - in->last_x) / v->zoom;
        v->y -= (ev->motion.y - in->last_y) / v->zoom;
        in->last_x = ev->motion.x;
        in->last_y = ev->motion.y;
        vw_view_clamp(v, g);
        return 1;
    case SDL_MOUSEWHEEL: {
        float dy = ev->wheel.preciseY;
        if (ev->wheel.direction == SDL_MOUSEWHEEL_FLIPPED)
            dy = -dy;
        if (dy == 0)
            return 0;
        int mx, my;
        SDL_GetMouseState(&mx, &my);
        vw_view_zoom_at(v, g, pow(WHEEL_STEP, dy), mx, my);
        return 1;
    }
    case SDL_KEYDOWN:
        switch (ev->key.keysym.sym) {
        case SDLK_q:
            in->quit = 1;
            return 0;
        case SDLK_LEFT:
            v->x -= v->w / 8.0 / v->zoom;
            break;
        case SDLK_RIGHT:
            v->x += v->w / 8.0 / v->zoom;
            break;
        case SDLK_UP:
            v->y -= v->h / 8.0 / v->zoom;
            break;
        case SDLK_DOWN:
            v->y += v->h / 8.0 / v->zoom;
            break;
        case SDLK_PLUS:
        case SDLK_EQUALS:
        case SDLK_KP_PLUS:
            vw_view_zoom_at(v, g, KEY_STEP, v->w / 2.0, v->h / 2.0);
            return 1;
        case SDLK_MINUS:
        case SDLK_KP_MINUS:
            vw_view_zoom_at(v, g, 1 / KEY_STEP, v->w / 2.0, v->h / 2.0);
            return 1;
        case SDLK_HOME:
            vw_view_fit(v, g);
            return 1;
        case SDLK_o:
            in->overlays = !in->overlays;
            return 1;
        default:
            return 0;
        }
        vw_view_clamp(v, g);
        return 1;
    case SDL_WINDOWEVENT:
        if (ev->window.event == SDL_WINDOWEVENT_SIZE_CHANGED ||
            ev->window.event == SDL_WINDOWEVENT_EXPOSED)
            return 1;
        return 0;
    default:
        return 0;
    }
}
