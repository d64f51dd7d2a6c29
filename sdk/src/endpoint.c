/*
 * Endpoints: the check that nginx -t and the exporter share.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include <vaquero/vaquero.h>
#include <vaquero/endpoint.h>

static int
fail(char *err, size_t err_size, const char *msg)
{
    if (err_size) {
        snprintf(err, err_size, "%s", msg);
    }

    return VQ_EINVAL;
}

static int
check_port(const char *p, const char *last)
{
    unsigned long  port;

    if (p == last || last - p > 5) {
        return 0;
    }

    for (port = 0; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return 0;
        }
        port = port * 10 + (unsigned long) (*p - '0');
    }

    return port >= 1 && port <= 65535;
}

/*
 * What passes the checks above must also be a URL libcurl takes (host
 * characters, IPv6 addresses), or every export would fail while nginx -t
 * said the configuration was fine.
 */
static int
check_with_curl(const char *ep, size_t len, char *err, size_t err_size)
{
    int         rc;
    char       *copy, *url;
    CURLU      *u;
    CURLUcode   uc;

    copy = strndup(ep, len);
    url = copy ? vq_endpoint_url(copy, "") : NULL;
    u = curl_url();

    if (url == NULL || u == NULL) {
        rc = fail(err, err_size, "out of memory");

    } else if ((uc = curl_url_set(u, CURLUPART_URL, url, 0)) != CURLUE_OK) {
        if (err_size) {
            snprintf(err, err_size, "libcurl refuses it: %s",
                     curl_url_strerror(uc));
        }
        rc = VQ_EINVAL;

    } else {
        rc = VQ_ENDPOINT_HTTP;
    }

    curl_url_cleanup(u);
    free(url);
    free(copy);

    return rc;
}

int
vq_endpoint_check(const char *ep, size_t len, char *err, size_t err_size)
{
    const char  *p, *last, *host, *host_end, *colon;
    size_t       i, skip;

    for (i = 0; i < len; i++) {
        if ((unsigned char) ep[i] <= ' ' || ep[i] == 0x7f) {
            return fail(err, err_size,
                        "it must not hold white space or control characters");
        }
    }

    if (len >= 5 && strncasecmp(ep, "file:", 5) == 0) {
        if (len == 5 || ep[5] != '/') {
            return fail(err, err_size,
                        "the path after \"file:\" must be absolute "
                        "(\"file:/path\")");
        }

        if (len > 6 && ep[6] == '/') {
            return fail(err, err_size,
                        "a file endpoint has no host: \"file:/path\"");
        }

        if (ep[len - 1] == '/') {
            return fail(err, err_size, "the path names a directory");
        }

        return VQ_ENDPOINT_FILE;
    }

    if (len >= 7 && strncasecmp(ep, "http://", 7) == 0) {
        skip = 7;

    } else if (len >= 8 && strncasecmp(ep, "https://", 8) == 0) {
        skip = 8;

    } else {
        return fail(err, err_size,
                    "it must start with \"http://\", \"https://\" "
                    "or \"file:/\"");
    }

    last = ep + len;
    host = ep + skip;

    for (p = host; p < last && *p != '/'; p++) {
        if (*p == '?' || *p == '#') {
            return fail(err, err_size,
                        "it must not have a query or a fragment");
        }

        if (*p == '@') {
            return fail(err, err_size,
                        "it must not hold a user name or password "
                        "(use vaquero_api_key or vaquero_export_header)");
        }
    }

    host_end = p;

    for ( /* void */ ; p < last; p++) {
        if (*p == '?' || *p == '#') {
            return fail(err, err_size,
                        "it must not have a query or a fragment");
        }
    }

    if (host == host_end) {
        return fail(err, err_size, "it has no host");
    }

    if (*host == '[') {
        /* an IPv6 address: [::1] or [::1]:port */
        for (p = host + 1; p < host_end && *p != ']'; p++) { /* void */ }

        if (p == host_end || p == host + 1) {
            return fail(err, err_size, "it has an invalid IPv6 address");
        }

        p++;

        if (p < host_end && (*p != ':' || !check_port(p + 1, host_end))) {
            return fail(err, err_size, "it has an invalid port");
        }

        return check_with_curl(ep, len, err, err_size);
    }

    colon = memchr(host, ':', (size_t) (host_end - host));

    if (colon) {
        if (colon == host) {
            return fail(err, err_size, "it has no host");
        }

        if (!check_port(colon + 1, host_end)) {
            return fail(err, err_size, "it has an invalid port");
        }
    }

    return check_with_curl(ep, len, err, err_size);
}

char *
vq_endpoint_url(const char *ep, const char *path)
{
    char    *url;
    size_t   len, plen, i;

    len = strlen(ep);
    while (len > 0 && ep[len - 1] == '/') {
        len--;
    }

    plen = strlen(path);

    url = malloc(len + plen + 1);
    if (url == NULL) {
        return NULL;
    }

    memcpy(url, ep, len);
    memcpy(url + len, path, plen + 1);

    /* the scheme is case-insensitive; libcurl's allowed protocols are not */
    for (i = 0; i < len && url[i] != ':'; i++) {
        if (url[i] >= 'A' && url[i] <= 'Z') {
            url[i] = (char) (url[i] - 'A' + 'a');
        }
    }

    return url;
}

const char *
vq_endpoint_file_path(const char *ep)
{
    return ep + 5;
}
