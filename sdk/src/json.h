/*
 * A minimal streaming JSON writer over vq_buf_t (internal).
 */

#ifndef VAQUERO_JSON_H
#define VAQUERO_JSON_H

#include <stdint.h>
#include <string.h>

#include <vaquero/buf.h>

/* A quoted JSON string; NUL and bytes that are not UTF-8 become U+FFFD. */
void vq_json_string(vq_buf_t *b, const char *s, size_t len);

/* The same without the quotes, for a string written in pieces. */
void vq_json_escape(vq_buf_t *b, const char *s, size_t len);

void vq_json_int(vq_buf_t *b, int64_t v);

/* v / 1000 with three decimals, e.g. 12.345 */
void vq_json_milli(vq_buf_t *b, int64_t v);

#define vq_json_lit(b, s)  vq_buf_append(b, s, sizeof(s) - 1)

static inline void
vq_json_cstring(vq_buf_t *b, const char *s)
{
    vq_json_string(b, s, strlen(s));
}

#endif /* VAQUERO_JSON_H */
