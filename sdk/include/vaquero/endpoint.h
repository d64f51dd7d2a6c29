/*
 * Where batches go: "http://host[:port][/base]", "https://..." (the scheme
 * in any case), or "file:/absolute/path".  One check, shared by whoever
 * reads a configuration (nginx -t) and by the exporter, so that what the
 * first accepts the second can use.
 */

#ifndef VAQUERO_ENDPOINT_H
#define VAQUERO_ENDPOINT_H

#include <stddef.h>

#define VQ_ENDPOINT_HTTP  1
#define VQ_ENDPOINT_FILE  2

/*
 * Checks len bytes of endpoint: VQ_ENDPOINT_HTTP, VQ_ENDPOINT_FILE, or
 * VQ_EINVAL with what is wrong in err (a phrase, e.g. "it has no host").
 * An http(s) endpoint has a host, an optional port (1..65535), an
 * optional base path, no user name or password, query or fragment, and
 * no white space or control characters; a file endpoint an absolute path.
 */
int vq_endpoint_check(const char *endpoint, size_t len, char *err,
    size_t err_size);

/*
 * The URL to POST to: a checked http(s) endpoint, its scheme in lowercase
 * and its trailing slashes cut, followed by path.  Allocated (free());
 * NULL when out of memory.
 */
char *vq_endpoint_url(const char *endpoint, const char *path);

/* The path of a checked file endpoint (within endpoint). */
const char *vq_endpoint_file_path(const char *endpoint);

#endif /* VAQUERO_ENDPOINT_H */
