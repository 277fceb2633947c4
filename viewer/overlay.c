/* viewer/overlay: see overlay.h. Text textures are cached per slot and made
 * again only when their string changes, so a still frame costs no
 * rasterising. */
#include "overlay.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <SDL_ttf.h>

#include "cs/err.h"
#include "cs/log.h"

enum { SLOT_NAME, SLOT_STATUS, SLOT_SCALE, NSLOTS };

typedef struct {
    char text[256];
    SDL_Texture *tex;
    int w, h;
} slot;

#define NLABELS 64

typedef struct {
    slot s;
    uint32_t rgb;
    uint64_t used;
} label_slot;

struct vw_overlay {
    SDL_Renderer *ren;
    TTF_Font *font;
    int ttf_inited;
    slot slots[NSLOTS];
    label_slot labels[NLABELS]; /* annotation labels, by text and colour */
    uint64_t tick;
};

int vw_overlay_new(vw_overlay **out, SDL_Renderer *ren, const char *font_path)
{
    vw_overlay *o = calloc(1, sizeof(*o));
    if (!o)
        return cs_error_set(CS_ENOMEM, "out of memory");
    o->ren = ren;
    if (TTF_Init() == 0) {
        o->ttf_inited = 1;
        o->font = font_path ? TTF_OpenFont(font_path, 14) : NULL;
    }
    if (!o->font)
        cs_log(NULL, CS_LOG_WARN, "font %s not usable (%s): overlays without text",
               font_path ? font_path : "(none)", TTF_GetError());
    *out = o;
    return 0;
}

void vw_overlay_free(vw_overlay *o)
{
    if (!o)
        return;
    for (int i = 0; i < NSLOTS; i++)
        if (o->slots[i].tex)
            SDL_DestroyTexture(o->slots[i].tex);
    for (int i = 0; i < NLABELS; i++)
        if (o->labels[i].s.tex)
            SDL_DestroyTexture(o->labels[i].s.tex);
    if (o->font)
        TTF_CloseFont(o->font);
    if (o->ttf_inited)
        TTF_Quit();
    free(o);
}

int vw_overlay_has_text(const vw_overlay *o)
{
    return o && o->font;
}

double vw_overlay_scale_bar(double mpp, double zoom, double max_px, double *um)
{
    *um = 0;
    if (!(mpp > 0) || !(zoom > 0))
        return 0;
    static const double steps[] = {1, 2, 5};
    double best = 0, best_px = 0;
    for (int e = -1; e <= 6; e++)
        for (int i = 0; i < 3; i++) {
            double len = steps[i] * pow(10, e);
            double px = len / mpp * zoom;
            if (px <= max_px && len > best) {
                best = len;
                best_px = px;
            }
        }
    *um = best;
    return best_px;
}

/* Draw @p text in slot @p s at (x, y) on a translucent box. */
static void text(vw_overlay *o, int s, const char *str, int x, int y, int right)
{
    if (!o->font || !*str)
        return;
    slot *sl = &o->slots[s];
    if (!sl->tex || strcmp(sl->text, str) != 0) {
        if (sl->tex)
            SDL_DestroyTexture(sl->tex);
        sl->tex = NULL;
        snprintf(sl->text, sizeof(sl->text), "%s", str);
        SDL_Color white = {255, 255, 255, 255};
        SDL_Surface *surf = TTF_RenderUTF8_Blended(o->font, str, white);
        if (!surf)
            return;
        sl->tex = SDL_CreateTextureFromSurface(o->ren, surf);
        sl->w = surf->w;
        sl->h = surf->h;
        SDL_FreeSurface(surf);
        if (!sl->tex)
            return;
        SDL_SetTextureBlendMode(sl->tex, SDL_BLENDMODE_BLEND);
    }
    if (right)
        x -= sl->w;
    SDL_Rect box = {x - 4, y - 2, sl->w + 8, sl->h + 4};
    SDL_SetRenderDrawBlendMode(o->ren, SDL_BLENDMODE_BLEND);
    SDL_SetRenderDrawColor(o->ren, 0, 0, 0, 150);
    SDL_RenderFillRect(o->ren, &box);
    SDL_Rect dst = {x, y, sl->w, sl->h};
    SDL_RenderCopy(o->ren, sl->tex, NULL, &dst);
}

void vw_overlay_draw(vw_overlay *o, int w, int h, const vw_overlay_info *in)
{
    char buf[256];
    int lh = o->font ? TTF_FontLineSkip(o->font) : 16;
    text(o, SLOT_NAME, in->name ? in->name : "", 10, 8, 0);
    if (in->failed)
        snprintf(buf, sizeof(buf), "level %d/%d  zoom %.1f%%  %d in flight  %d failed", in->level,
                 in->nlevels - 1, in->zoom * 100, in->in_flight, in->failed);
    else
        snprintf(buf, sizeof(buf), "level %d/%d  zoom %.1f%%  %d in flight", in->level,
                 in->nlevels - 1, in->zoom * 100, in->in_flight);
    text(o, SLOT_STATUS, buf, w - 10, h - lh - 8, 1);

    double um;
    double px = vw_overlay_scale_bar(in->mpp, in->zoom, w / 4.0 > 60 ? w / 4.0 : 60, &um);
    if (px >= 2) {
        int bx = 14, by = h - 18, bw = (int)lround(px);
        SDL_SetRenderDrawBlendMode(o->ren, SDL_BLENDMODE_BLEND);
        SDL_SetRenderDrawColor(o->ren, 0, 0, 0, 150);
        SDL_Rect back = {bx - 4, by - lh - 8, bw + 8, lh + 16};
        SDL_RenderFillRect(o->ren, &back);
        SDL_SetRenderDrawBlendMode(o->ren, SDL_BLENDMODE_NONE);
        SDL_SetRenderDrawColor(o->ren, 255, 255, 255, 255);
        SDL_Rect bar = {bx, by, bw, 4};
        SDL_RenderFillRect(o->ren, &bar);
        SDL_Rect l = {bx, by - 4, 2, 8}, r = {bx + bw - 2, by - 4, 2, 8};
        SDL_RenderFillRect(o->ren, &l);
        SDL_RenderFillRect(o->ren, &r);
        if (um >= 1000)
            snprintf(buf, sizeof(buf), "%g mm", um / 1000);
        else
            snprintf(buf, sizeof(buf), "%g \xc2\xb5m", um);
        text(o, SLOT_SCALE, buf, bx, by - lh - 4, 0);
    }
}

int vw_overlay_line_height(const vw_overlay *o)
{
    return o && o->font ? TTF_FontLineSkip(o->font) : 16;
}

int vw_overlay_label(vw_overlay *o, const char *str, int x, int y, uint32_t rgb)
{
    if (!o || !o->font || !*str)
        return 0;
    label_slot *hit = NULL, *old = &o->labels[0];
    for (int i = 0; i < NLABELS && !hit; i++) {
        label_slot *l = &o->labels[i];
        if (l->s.tex && l->rgb == rgb && strcmp(l->s.text, str) == 0)
            hit = l;
        else if (l->used < old->used)
            old = l;
    }
    if (!hit) {
        hit = old;
        if (hit->s.tex)
            SDL_DestroyTexture(hit->s.tex);
        hit->s.tex = NULL;
        snprintf(hit->s.text, sizeof(hit->s.text), "%s", str);
        hit->rgb = rgb;
        SDL_Color c = {rgb >> 16 & 255, rgb >> 8 & 255, rgb & 255, 255};
        SDL_Surface *surf = TTF_RenderUTF8_Blended(o->font, str, c);
        if (!surf)
            return 0;
        hit->s.tex = SDL_CreateTextureFromSurface(o->ren, surf);
        hit->s.w = surf->w;
        hit->s.h = surf->h;
        SDL_FreeSurface(surf);
        if (!hit->s.tex)
            return 0;
        SDL_SetTextureBlendMode(hit->s.tex, SDL_BLENDMODE_BLEND);
    }
    hit->used = ++o->tick;
    SDL_Rect box = {x - 3, y - 1, hit->s.w + 6, hit->s.h + 2};
    SDL_SetRenderDrawBlendMode(o->ren, SDL_BLENDMODE_BLEND);
    SDL_SetRenderDrawColor(o->ren, 0, 0, 0, 160);
    SDL_RenderFillRect(o->ren, &box);
    SDL_Rect dst = {x, y, hit->s.w, hit->s.h};
    SDL_RenderCopy(o->ren, hit->s.tex, NULL, &dst);
    return hit->s.w;
}
