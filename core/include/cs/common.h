/* Consilium: macros shared by every public header. */
#ifndef CS_COMMON_H
#define CS_COMMON_H

#define CS_API               __attribute__((visibility("default")))
#define CS_INTERNAL          __attribute__((visibility("hidden")))
#define CS_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

#endif
