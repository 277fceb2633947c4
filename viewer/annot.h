/* viewer/annot: the annotations of the slide on screen (core/net/PROTOCOL.md's
 * annotation object), their measurements, hit-testing, and their JSON and
 * GeoJSON (QuPath layout) forms.
 *
 * Points are level-0 pixels, y down. An annotation has a local `key`, unique
 * for the process and never reused, that the editor and the sync code use to
 * find it again (the server `id` is empty until the server has assigned one).
 * Measurements use the slide's MPP: line length = sum of segment lengths with
 * mpp_x, mpp_y; closed shapes: area (shoelace; rectangle w*h; ellipse pi*a*b)
 * and perimeter. Render thread only. */
#ifndef VW_ANNOT_H
#define VW_ANNOT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef enum {
    VW_AN_POINT,
    VW_AN_LINE,
    VW_AN_RECT,
    VW_AN_ELLIPSE,
    VW_AN_POLYGON,
    VW_AN_FREEHAND,
    VW_AN_TEXT,
    VW_AN_NTYPES
} vw_an_type;

typedef struct {
    double x, y;
} vw_pt;

typedef struct {
    double length_px, length_um; /**< lines */
    double area_px2, area_um2;   /**< closed shapes */
    double perimeter_px, perimeter_um;
    int has_um; /**< the slide has an MPP */
} vw_measure;

typedef struct {
    uint64_t key; /**< local, unique, never reused */
    char id[40];  /**< server id; "" until assigned */
    vw_an_type type;
    vw_pt *pts;
    int npts, cap;
    char *label, *cls, *comment; /**< never NULL */
    char author[64];
    char created[40], updated[40];
    uint32_t color; /**< 0xRRGGBB */
    long rev;
    /* sync state (server mode) */
    int req;         /**< request in flight for it (create or update), 0 none */
    int dirty;       /**< edited while `req` was in flight: send again after */
    int del_pending; /**< deleted locally while its create was in flight */
} vw_annot;

typedef struct {
    vw_annot **v; /**< drawing order: later on top */
    size_t n, cap;
    double mpp_x, mpp_y; /**< µm per level-0 pixel; 0 when unknown */
    uint64_t next_key;
} vw_annots;

const char *vw_annot_type_name(vw_an_type t);
/** @return the type or -1. */
int vw_annot_type_parse(const char *s);
/** Whether the type is a closed region (rectangle, ellipse, polygon, freehand). */
int vw_annot_closed(vw_an_type t);

/** A new empty annotation (no points) with a fresh key; NULL on no memory. */
vw_annot *vw_annot_new(vw_annots *s, vw_an_type type);
void vw_annot_free(vw_annot *a);
vw_annot *vw_annot_clone(vw_annots *s, const vw_annot *a);
int vw_annot_add_pt(vw_annot *a, double x, double y);
int vw_annot_set_str(char **dst, const char *src);

void vw_annots_init(vw_annots *s, double mpp_x, double mpp_y);
void vw_annots_free(vw_annots *s);
void vw_annots_clear(vw_annots *s);
/** Append (ownership passes). @return 0 or CS_ENOMEM (and @p a is freed). */
int vw_annots_add(vw_annots *s, vw_annot *a);
vw_annot *vw_annots_by_key(const vw_annots *s, uint64_t key);
vw_annot *vw_annots_by_id(const vw_annots *s, const char *id);
/** Remove and free. */
void vw_annots_remove(vw_annots *s, uint64_t key);
/** Put @p a (owned) in place of the annotation with key @p key, keeping
 *  that key and the position; appended if none. */
void vw_annots_replace(vw_annots *s, uint64_t key, vw_annot *a);

void vw_annot_measure(const vw_annots *s, const vw_annot *a, vw_measure *out);
/** The ellipse of bounding box pts[0], pts[1] as @p n vertices. */
void vw_annot_ellipse_pts(const vw_annot *a, vw_pt *out, int n);
/** The closed outline in level-0 pixels (rectangle 4, ellipse 64
 *  vertices; polygon and freehand their points). @return count (malloc'd
 *  into *out), 0 for open shapes or on no memory. */
int vw_annot_outline(const vw_annot *a, vw_pt **out);

/** Default colours: the class palette, else one per author name. */
uint32_t vw_annot_class_color(const char *cls);
uint32_t vw_annot_author_color(const char *author);
extern const char *const vw_annot_classes[]; /**< NULL-terminated */

/** The annotation as PROTOCOL.md's object (measure included); NULL on no memory. */
json_t *vw_annot_to_json(const vw_annots *s, const vw_annot *a, const char *slide);
/** The fields a client sends (type, pts, label, class, color, comment). */
json_t *vw_annot_fields_json(const vw_annot *a);
/** Parse an annotation object. @return NULL (and @p err filled) when invalid. */
vw_annot *vw_annot_from_json(vw_annots *s, const json_t *j, char *err, size_t errn);
/** One GeoJSON Feature (QuPath layout). */
json_t *vw_annot_to_feature(const vw_annots *s, const vw_annot *a);
/** From a Feature: properties.consilium when present, else from the geometry. */
vw_annot *vw_annot_from_feature(vw_annots *s, const json_t *f, char *err, size_t errn);

/** All annotations as {"annotations":[...], "count":n} (for dumps). */
json_t *vw_annots_to_json(const vw_annots *s, const char *slide);
/** Write a FeatureCollection atomically (temp file + rename). @return 0 or CS_EIO. */
int vw_annots_save_geojson(const vw_annots *s, const char *path);
/** Load a FeatureCollection; a missing file is no error (0, nothing loaded). */
int vw_annots_load_geojson(vw_annots *s, const char *path);

/** The annotation under screen point (@p sx, @p sy) within @p tol px, topmost
 *  first, for a view at (@p vx, @p vy) and @p zoom. NULL if none. */
vw_annot *vw_annots_hit(const vw_annots *s, double vx, double vy, double zoom, double sx, double sy,
                        double tol);

/** A fresh 16-hex-digit id. */
void vw_annot_make_id(char out[17]);

#endif
