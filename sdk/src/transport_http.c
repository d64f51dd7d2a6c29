/*
 * The HTTP transport: libcurl, one easy handle (its connection kept
 * alive) driven through a multi handle, so that another thread can wake
 * it and cut a transfer short at a shutdown deadline.  TLS material comes
 * as PEM contents (read by whoever could read the files: the nginx
 * master), gzip with zlib.
 */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <curl/curl.h>

#include <vaquero/vaquero.h>
#include <vaquero/transport.h>
#include "transport.h"

#define VQ_TRANSFER_POLL_MS    50       /* deadline checks during a transfer */
#define VQ_UPLOAD_BUFFER_SIZE  (512 * 1024)

typedef struct {
    vq_transport_t      t;
    CURLM              *multi;
    CURL               *curl;
    struct curl_slist  *headers;
    vq_gzip_t          *gzip;           /* NULL: bodies go as they are */
    vq_buf_t            gz;
    char                curl_error[CURL_ERROR_SIZE];
    struct curl_blob    trusted;
    struct curl_blob    cert;
    struct curl_blob    key;
} vq_http_transport_t;

static size_t
discard_body(char *ptr, size_t size, size_t nmemb, void *data)
{
    (void) ptr;
    (void) data;
    return size * nmemb;
}

/* the lines may hold credentials: do not leave copies of them around */
static void
free_list(struct curl_slist *list)
{
    struct curl_slist  *l;

    for (l = list; l; l = l->next) {
        memset(l->data, 0, strlen(l->data));
    }

    curl_slist_free_all(list);
}

static void
free_blob(struct curl_blob *b)
{
    if (b->data) {
        memset(b->data, 0, b->len);
        free(b->data);
        b->data = NULL;
    }
}

static int
copy_blob(struct curl_blob *b, const void *data, size_t len)
{
    if (data == NULL) {
        return VQ_OK;
    }

    b->data = malloc(len ? len : 1);
    if (b->data == NULL) {
        return VQ_ENOMEM;
    }

    memcpy(b->data, data, len);
    b->len = len;
    b->flags = CURL_BLOB_NOCOPY;

    return VQ_OK;
}

static void
http_destroy(vq_transport_t *t)
{
    vq_http_transport_t  *h = (vq_http_transport_t *) t;

    if (h->curl) {
        curl_easy_cleanup(h->curl);
    }

    if (h->multi) {
        curl_multi_cleanup(h->multi);
    }

    free_list(h->headers);
    free_blob(&h->trusted);
    free_blob(&h->cert);
    free_blob(&h->key);
    vq_gzip_destroy(h->gzip);
    vq_buf_free(&h->gz);
    free(t->target);
    free(h);
}

/*
 * The new list replaces the old one only once it is whole: when memory
 * runs out, the requests go on with the headers they had.
 */
static int
http_set_headers(vq_transport_t *t, const char *const *lines, size_t n)
{
    vq_http_transport_t  *h = (vq_http_transport_t *) t;
    struct curl_slist    *list, *l;
    size_t                i;

    list = NULL;

    for (i = 0; i < n; i++) {
        l = curl_slist_append(list, lines[i]);
        if (l == NULL) {
            goto failed;
        }
        list = l;
    }

    if (h->gzip) {
        l = curl_slist_append(list, "Content-Encoding: gzip");
        if (l == NULL) {
            goto failed;
        }
        list = l;
    }

    /* no "Expect: 100-continue" round trip on large bodies */
    l = curl_slist_append(list, "Expect:");
    if (l == NULL) {
        goto failed;
    }

    list = l;

    if (curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, list) != CURLE_OK) {
        goto failed;
    }

    free_list(h->headers);
    h->headers = list;

    return VQ_OK;

failed:

    free_list(list);

    return VQ_ENOMEM;
}

static int
past_deadline(vq_transport_t *t)
{
    int64_t  at;

    at = __atomic_load_n(&t->abort_at, __ATOMIC_RELAXED);

    return at != 0 && vq_monotonic_ms() >= at;
}

static CURLcode
perform(vq_http_transport_t *h)
{
    CURLMsg   *msg;
    CURLcode   rc;
    int        running, left;

    if (curl_multi_add_handle(h->multi, h->curl) != CURLM_OK) {
        return CURLE_FAILED_INIT;
    }

    rc = CURLE_OK;
    running = 1;

    while (running) {
        if (curl_multi_perform(h->multi, &running) != CURLM_OK) {
            rc = CURLE_FAILED_INIT;
            break;
        }

        if (!running) {
            break;
        }

        if (past_deadline(&h->t)) {
            snprintf(h->curl_error, sizeof(h->curl_error),
                     "abandoned at the shutdown deadline");
            rc = CURLE_ABORTED_BY_CALLBACK;
            break;
        }

        curl_multi_poll(h->multi, NULL, 0, VQ_TRANSFER_POLL_MS, NULL);
    }

    if (!running) {
        while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == h->curl) {
                rc = msg->data.result;
            }
        }
    }

    curl_multi_remove_handle(h->multi, h->curl);

    return rc;
}

static const char *
header_value(vq_http_transport_t *h, const char *name)
{
    struct curl_header  *hdr;

    if (curl_easy_header(h->curl, name, 0, CURLH_HEADER, -1, &hdr)
        != CURLHE_OK)
    {
        return NULL;
    }

    return hdr->value;
}

static int64_t
unix_ms(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);
    return (int64_t) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void
http_send(vq_transport_t *t, vq_buf_t *body, vq_send_result_t *r)
{
    vq_http_transport_t  *h = (vq_http_transport_t *) t;
    const char           *data, *v;
    size_t                len;
    CURLcode              rc;

    data = body->data;
    len = body->len;

    if (h->gzip) {
        vq_buf_reset(&h->gz);

        if (vq_gzip(h->gzip, &h->gz, body->data, body->len) != VQ_OK) {
            snprintf(r->error, sizeof(r->error), "cannot gzip a batch of "
                     "%zu bytes", body->len);
            return;
        }

        data = h->gz.data;
        len = h->gz.len;
    }

    if (h->headers == NULL) {
        snprintf(r->error, sizeof(r->error), "no request headers");
        return;
    }

    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, data);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);

    h->curl_error[0] = '\0';
    rc = perform(h);

    if (rc != CURLE_OK) {
        snprintf(r->error, sizeof(r->error), "%s",
                 h->curl_error[0] ? h->curl_error : curl_easy_strerror(rc));
        return;
    }

    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &r->status);

    if (r->status == 429 || r->status == 503) {
        v = header_value(h, "Retry-After");
        if (v) {
            r->retry_after_ms = vq_retry_after_parse(v, unix_ms());
        }
    }

    if (r->status >= 300 && r->status < 400) {
        v = header_value(h, "Location");
        snprintf(r->location, sizeof(r->location), "%s", v ? v : "");
    }
}

static void
http_wakeup(vq_transport_t *t)
{
    vq_http_transport_t  *h = (vq_http_transport_t *) t;

    curl_multi_wakeup(h->multi);
}

static const vq_transport_ops_t  http_ops = {
    http_destroy,
    http_set_headers,
    http_send,
    http_wakeup,
    NULL
};

vq_transport_t *
vq_transport_http_create(const vq_http_conf_t *conf, char *err,
    size_t err_size)
{
    vq_http_transport_t  *h;
    CURL                 *c;
    long                  verify;

    if (conf->tls.certificate_key && conf->tls.certificate == NULL) {
        snprintf(err, err_size, "a certificate key without a certificate");
        return NULL;
    }

    h = calloc(1, sizeof(vq_http_transport_t));
    if (h == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }

    h->t.ops = &http_ops;
    vq_buf_init(&h->gz);

    h->t.target = strdup(conf->url);
    h->curl = c = curl_easy_init();
    h->multi = curl_multi_init();

    if (conf->gzip) {
        h->gzip = vq_gzip_create();
    }

    if (h->t.target == NULL || c == NULL || h->multi == NULL
        || (conf->gzip && h->gzip == NULL)
        || copy_blob(&h->trusted, conf->tls.trusted_certificate,
                     conf->tls.trusted_certificate_len) != VQ_OK
        || copy_blob(&h->cert, conf->tls.certificate,
                     conf->tls.certificate_len) != VQ_OK
        || copy_blob(&h->key, conf->tls.certificate_key,
                     conf->tls.certificate_key_len) != VQ_OK)
    {
        snprintf(err, err_size, "cannot set up libcurl: out of memory");
        http_destroy(&h->t);
        return NULL;
    }

    /*
     * Every option is checked: a libcurl without one of them (the blobs
     * need 7.77, PROTOCOLS_STR 7.85) must not mean other CAs, no client
     * certificate or any protocol, silently.
     */
    verify = conf->tls.no_verify ? 0L : 1L;

    if (curl_easy_setopt(c, CURLOPT_URL, h->t.target) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https")
           != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_POST, 1L) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) conf->timeout_ms)
           != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                            (long) conf->timeout_ms) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body)
           != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->curl_error)
           != CURLE_OK
        /* a redirect is a configuration error, reported, never followed */
        || curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, verify) != CURLE_OK
        || curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L)
           != CURLE_OK)
    {
        snprintf(err, err_size, "cannot set up libcurl %s for \"%s\"",
                 curl_version_info(CURLVERSION_NOW)->version, h->t.target);
        http_destroy(&h->t);
        return NULL;
    }

    /*
     * A body goes out in one send() where it can: libcurl copies a body
     * past its first 64 KB into the upload buffer, and each send on
     * loopback wakes the collector once more.  Only a hint: 2 MB at most,
     * and an older libcurl keeps its default.
     */
    (void) curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE,
                            (long) VQ_UPLOAD_BUFFER_SIZE);

    /* these CAs instead of the system's */
    if (h->trusted.data
        && (curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &h->trusted) != CURLE_OK
            || curl_easy_setopt(c, CURLOPT_CAPATH, NULL) != CURLE_OK))
    {
        snprintf(err, err_size, "libcurl %s cannot take trusted "
                 "certificates from memory",
                 curl_version_info(CURLVERSION_NOW)->version);
        http_destroy(&h->t);
        return NULL;
    }

    if (h->cert.data
        && (curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &h->cert) != CURLE_OK
            || curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM") != CURLE_OK
            || curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB,
                                h->key.data ? &h->key : &h->cert)
               != CURLE_OK
            || curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM") != CURLE_OK))
    {
        snprintf(err, err_size, "libcurl %s cannot take a client "
                 "certificate from memory",
                 curl_version_info(CURLVERSION_NOW)->version);
        http_destroy(&h->t);
        return NULL;
    }

    return &h->t;
}

int64_t
vq_retry_after_parse(const char *value, int64_t now_ms)
{
    const char  *p;
    int64_t      ms;
    time_t       at;

    for (p = value; *p == ' ' || *p == '\t'; p++) { /* void */ }

    if (*p >= '0' && *p <= '9') {
        for (ms = 0; *p >= '0' && *p <= '9'; p++) {
            if (ms < VQ_RETRY_AFTER_MAX_MS) {
                ms = ms * 10 + (*p - '0') * 1;
            }
        }

        while (*p == ' ' || *p == '\t') {
            p++;
        }

        if (*p != '\0') {
            return -1;
        }

        /* seconds; the loop above stops growing it past the bound */
        ms *= 1000;

        return ms > VQ_RETRY_AFTER_MAX_MS ? VQ_RETRY_AFTER_MAX_MS : ms;
    }

    /* an HTTP-date: a weekday's name first, in every form RFC 9110 reads */
    if (!isalpha((unsigned char) *p)) {
        return -1;
    }

    at = curl_getdate(p, NULL);
    if (at == -1) {
        return -1;
    }

    ms = (int64_t) at * 1000 - now_ms;

    if (ms < 0) {
        return 0;
    }

    return ms > VQ_RETRY_AFTER_MAX_MS ? VQ_RETRY_AFTER_MAX_MS : ms;
}
