/* Annotations: the object model of core/net/PROTOCOL.md, its validation,
 * measurements in µm from the slide's MPP, and GeoJSON in QuPath's layout.
 *
 * An annotation is a JSON object (jansson): type, pts (level-0 pixels),
 * label, class, color, comment, and the server-set id, slide, author,
 * created, updated, rev, measure. These functions are pure: no I/O, no
 * state; thread-safe. */
#ifndef CS_ANNOT_H
#define CS_ANNOT_H

#include <stddef.h>

#include <jansson.h>

#include "cs/common.h"

/** Most points one annotation may have. */
#define CS_ANNOT_MAX_POINTS 100000

/** Validate the client-settable fields of @p in (a new annotation, or with
 *  @p base set, a patch applied to @p base) and return in @p out a new
 *  object holding type, pts, label, class, color, comment (defaults filled,
 *  unknown fields dropped; base's server fields kept).
 *  @return 0 or CS_EINVAL with a message naming the field. */
CS_API int cs_annot_normalize(const json_t *in, const json_t *base, json_t **out);

/** Lengths, areas and perimeters of @p a: a new object with length_px or
 *  area_px2 + perimeter_px, and the _um / _um2 figures when both MPPs are
 *  positive. Lines: polyline length; closed shapes: shoelace area (rectangle
 *  w·h, ellipse π·a·b, Ramanujan's perimeter). */
CS_API json_t *cs_annot_measure(const json_t *a, double mpp_x, double mpp_y);

/** Bounding box of the points (x0 <= x1, y0 <= y1). */
CS_API void cs_annot_bbox(const json_t *a, double box[4]);

/** Default colour "#rrggbb" of a class (a fixed palette for the usual
 *  pathology classes, else a stable hash); NULL or "" gives the author's
 *  colour from @p author. Returns a static or thread-local string. */
CS_API const char *cs_annot_default_color(const char *cls, const char *author);

/** One annotation as a GeoJSON Feature in QuPath's layout (a new reference). */
CS_API json_t *cs_annot_to_feature(const json_t *a);
/** A FeatureCollection of the annotations in the JSON array @p list. */
CS_API json_t *cs_annot_to_geojson(const json_t *list);
/** Parse a FeatureCollection (or one Feature) into a JSON array of
 *  annotations ready for cs_annot_normalize (ids, authors and revs of the
 *  source are kept under "source"). @return 0 or CS_EINVAL naming the
 *  feature and field. */
CS_API int cs_annot_from_geojson(const json_t *fc, json_t **out);

#endif
