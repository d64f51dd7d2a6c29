/*
 * An HTTP/1.x response read as it arrives: the head is gathered whole,
 * then parsed; the body, length-delimited, chunked or ended by the close,
 * is skipped a byte range or a byte at a time.
 */

#include <string.h>
#include <strings.h>

#include <vaquero/vaquero.h>
#include "http_response.h"

enum {
    ST_HEAD = 0,
    ST_LENGTH,
    ST_CHUNK_SIZE_FIRST,
    ST_CHUNK_SIZE,
    ST_CHUNK_SIZE_WS,
    ST_CHUNK_EXT,
    ST_CHUNK_SIZE_LF,
    ST_CHUNK_DATA,
    ST_CHUNK_DATA_CR,
    ST_CHUNK_DATA_LF,
    ST_TRAILER,
    ST_UNTIL_CLOSE,
    ST_DONE,
    ST_FAILED
};

void
vq_http_response_init(vq_http_response_t *r)
{
    r->status = 0;
    r->final = 0;
    r->keep_alive = 0;
    r->retry_after[0] = '\0';
    r->location[0] = '\0';
    r->error = NULL;
    r->state = ST_HEAD;
    r->until_close = 0;
    r->left = 0;
    r->received = 0;
    r->head_len = 0;
    r->line_len = 0;
}

static int
fail(vq_http_response_t *r, const char *why)
{
    r->error = why;
    r->state = ST_FAILED;
    return VQ_ERROR;
}

static int
is_tchar(unsigned char c)
{
    /* RFC 9110 token characters */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
           || (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int
hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Is the comma-separated list in [p, end) holding token (any case)? */
static int
list_has(const char *p, const char *end, const char *token)
{
    const char  *s, *e;
    size_t       n;

    n = strlen(token);

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        for (s = p; p < end && *p != ','; p++) { /* void */ }

        for (e = p; e > s && (e[-1] == ' ' || e[-1] == '\t'); e--) {
            /* void */
        }

        if ((size_t) (e - s) == n && strncasecmp(s, token, n) == 0) {
            return 1;
        }
    }

    return 0;
}

/* Is the last coding of the list in [p, end) "chunked"? */
static int
last_is_chunked(const char *p, const char *end)
{
    const char  *s;

    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    for (s = end; s > p && s[-1] != ',' && s[-1] != ' ' && s[-1] != '\t';
         s--)
    {
        /* void */
    }

    return end - s == 7 && strncasecmp(s, "chunked", 7) == 0;
}

static void
copy_value(char *dst, size_t size, const char *v, size_t len, int cut)
{
    if (dst[0] != '\0') {
        return;                 /* the first one counts */
    }

    if (len >= size) {
        if (!cut) {
            return;             /* no value rather than a wrong one */
        }
        len = size - 1;
    }

    memcpy(dst, v, len);
    dst[len] = '\0';
}

/*
 * The head in r->head, up to and with the empty line: the status, the
 * headers that matter here, and how the body is delimited.
 */
static int
parse_head(vq_http_response_t *r)
{
    const char  *p, *end, *eol, *line_end, *colon, *v, *v_end;
    uint64_t     length;
    int          http10, has_length, has_te, chunked, close, keep;
    unsigned     i;

    p = r->head;
    end = r->head + r->head_len;

    /* HTTP/1.x SP 3DIGIT [SP reason] */
    if (r->head_len < 13 || memcmp(p, "HTTP/1.", 7) != 0
        || p[7] < '0' || p[7] > '9' || p[8] != ' ')
    {
        return fail(r, "the answer does not start with an HTTP/1.x status "
                    "line");
    }

    http10 = p[7] == '0';
    r->status = 0;

    for (i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return fail(r, "the answer's status is not three digits");
        }
        r->status = r->status * 10 + (p[i] - '0');
    }

    if (r->status < 100 || (p[12] != ' ' && p[12] != '\r' && p[12] != '\n')) {
        return fail(r, "the answer's status is not three digits");
    }

    eol = memchr(p, '\n', r->head_len);
    p = eol + 1;

    length = 0;
    has_length = 0;
    has_te = 0;
    chunked = 0;
    close = 0;
    keep = 0;

    r->retry_after[0] = '\0';
    r->location[0] = '\0';

    /* header lines, up to the empty one */
    for ( ;; ) {
        eol = memchr(p, '\n', end - p);
        line_end = (eol > p && eol[-1] == '\r') ? eol - 1 : eol;

        if (line_end == p) {
            break;
        }

        if (*p == ' ' || *p == '\t') {
            return fail(r, "the answer folds a header line");
        }

        for (colon = p; colon < line_end && is_tchar(*colon); colon++) {
            /* void */
        }

        if (colon == p || colon == line_end || *colon != ':') {
            return fail(r, "the answer has a malformed header line");
        }

        for (v = colon + 1; v < line_end && (*v == ' ' || *v == '\t'); v++) {
            /* void */
        }

        for (v_end = line_end; v_end > v && (v_end[-1] == ' '
                                             || v_end[-1] == '\t');
             v_end--)
        {
            /* void */
        }

#define NAME_IS(s)                                                           \
        ((size_t) (colon - p) == sizeof(s) - 1                               \
         && strncasecmp(p, s, sizeof(s) - 1) == 0)

        if (NAME_IS("Content-Length")) {
            uint64_t  n = 0;

            if (v == v_end) {
                return fail(r, "the answer's Content-Length is empty");
            }

            for ( /* void */ ; v < v_end; v++) {
                if (*v < '0' || *v > '9' || n > (UINT64_MAX - 9) / 10) {
                    return fail(r, "the answer's Content-Length is not a "
                                "number");
                }
                n = n * 10 + (*v - '0');
            }

            if (has_length && n != length) {
                return fail(r, "the answer has two Content-Lengths");
            }

            length = n;
            has_length = 1;

        } else if (NAME_IS("Transfer-Encoding")) {
            /* the last coding of the last header is what ends the body */
            has_te = 1;
            chunked = last_is_chunked(v, v_end);

        } else if (NAME_IS("Connection")) {
            close |= list_has(v, v_end, "close");
            keep |= list_has(v, v_end, "keep-alive");

        } else if (NAME_IS("Retry-After")) {
            copy_value(r->retry_after, sizeof(r->retry_after), v, v_end - v,
                       0);

        } else if (NAME_IS("Location")) {
            copy_value(r->location, sizeof(r->location), v, v_end - v, 1);
        }

#undef NAME_IS

        p = eol + 1;
    }

    if (r->status < 200) {
        if (r->status == 101) {
            return fail(r, "the answer switches protocols");
        }

        /* an interim answer (100 Continue, 103 Early Hints): the next */
        r->head_len = 0;
        return VQ_OK;
    }

    r->keep_alive = http10 ? keep && !close : !close;

    if (r->status == 204 || r->status == 304) {
        r->state = ST_DONE;

    } else if (has_te) {
        if (chunked) {
            r->state = ST_CHUNK_SIZE_FIRST;

        } else {
            r->state = ST_UNTIL_CLOSE;
        }

        /*
         * With a Content-Length as well, or from HTTP/1.0, which has no
         * Transfer-Encoding, the connection is not to be trusted further
         * (RFC 9112, 6.1 and 6.3).
         */
        if (has_length || http10) {
            r->keep_alive = 0;
        }

    } else if (has_length) {
        r->left = length;
        r->state = length ? ST_LENGTH : ST_DONE;

    } else {
        r->state = ST_UNTIL_CLOSE;
    }

    if (r->state == ST_UNTIL_CLOSE) {
        r->until_close = 1;
        r->keep_alive = 0;
    }

    r->final = 1;

    return VQ_OK;
}

/*
 * Takes head bytes up to the empty line that ends the head; *used: how
 * many.  The head is parsed once whole.
 */
static int
read_head(vq_http_response_t *r, const char *data, size_t len, size_t *used)
{
    size_t       room, from, n, i;
    const char  *h;

    room = VQ_HTTP_HEAD_MAX - r->head_len;
    n = len < room ? len : room;

    memcpy(r->head + r->head_len, data, n);

    /* the empty line may have begun in what came before */
    from = r->head_len > 2 ? r->head_len - 2 : 0;
    h = r->head;

    for (i = from; i < r->head_len + n; i++) {
        if (h[i] != '\n') {
            continue;
        }

        if (i + 1 < r->head_len + n && h[i + 1] == '\n') {
            i += 1;
            break;
        }

        if (i + 2 < r->head_len + n && h[i + 1] == '\r' && h[i + 2] == '\n') {
            i += 2;
            break;
        }
    }

    if (i < r->head_len + n) {
        /* i is the head's last byte */
        *used = i + 1 - r->head_len;
        r->head_len = i + 1;
        return parse_head(r);
    }

    *used = n;
    r->head_len += n;

    if (r->head_len == VQ_HTTP_HEAD_MAX) {
        return fail(r, "the answer's headers are longer than 64 KB");
    }

    return VQ_OK;
}

/* One byte of a chunk's size line, of the end of its data, or a trailer. */
static int
chunk_byte(vq_http_response_t *r, unsigned char c)
{
    int  v;

    switch (r->state) {

    case ST_CHUNK_SIZE_FIRST:
    case ST_CHUNK_SIZE:
        v = hex_value(c);

        if (v >= 0) {
            if (r->left > (UINT64_MAX >> 4)) {
                return fail(r, "the answer has a chunk too large");
            }
            r->left = (r->left << 4) | (uint64_t) v;
            r->state = ST_CHUNK_SIZE;
            break;
        }

        if (r->state == ST_CHUNK_SIZE_FIRST) {
            return fail(r, "the answer has a chunk without a size");
        }

        /* fall through */

    case ST_CHUNK_SIZE_WS:
        /* chunk-size [ BWS ";" chunk-ext ] CRLF */
        if (c == ' ' || c == '\t') {
            if (++r->line_len > VQ_HTTP_CHUNK_LINE_MAX) {
                return fail(r, "the answer has a chunk size line too long");
            }
            r->state = ST_CHUNK_SIZE_WS;
            break;
        }

        if (c == ';') {
            r->state = ST_CHUNK_EXT;
            break;
        }

        if (c == '\r') {
            r->state = ST_CHUNK_SIZE_LF;
            break;
        }

        if (c == '\n') {
            goto size_line_done;
        }

        return fail(r, "the answer has a malformed chunk size");

    case ST_CHUNK_EXT:
        if (c == '\n') {
            goto size_line_done;
        }

        if (++r->line_len > VQ_HTTP_CHUNK_LINE_MAX) {
            return fail(r, "the answer has a chunk size line too long");
        }
        break;

    case ST_CHUNK_SIZE_LF:
        if (c != '\n') {
            return fail(r, "the answer has a malformed chunk size");
        }
        goto size_line_done;

    case ST_CHUNK_DATA_CR:
        if (c == '\r') {
            r->state = ST_CHUNK_DATA_LF;
            break;
        }
        /* fall through */

    case ST_CHUNK_DATA_LF:
        if (c != '\n') {
            return fail(r, "the answer has a chunk longer than its size");
        }
        r->state = ST_CHUNK_SIZE_FIRST;
        break;

    case ST_TRAILER:
        if (c == '\n') {
            if (r->line_len == 0) {
                r->state = ST_DONE;
            }
            r->line_len = 0;
            break;
        }

        if (c != '\r' && ++r->line_len > VQ_HTTP_HEAD_MAX) {
            return fail(r, "the answer has a trailer line too long");
        }
        break;
    }

    return VQ_OK;

size_line_done:

    r->line_len = 0;
    r->state = r->left ? ST_CHUNK_DATA : ST_TRAILER;

    return VQ_OK;
}

int
vq_http_response_feed(vq_http_response_t *r, const char *data, size_t len,
    size_t *used)
{
    size_t  n, k;

    n = 0;

    while (r->state != ST_DONE) {
        if (r->state == ST_FAILED) {
            *used = n;
            return VQ_ERROR;
        }

        if (n == len) {
            *used = n;
            return VQ_HTTP_AGAIN;
        }

        /* a failure takes its bytes and leaves ST_FAILED, seen above */

        switch (r->state) {

        case ST_HEAD:
            (void) read_head(r, data + n, len - n, &k);
            break;

        case ST_LENGTH:
        case ST_CHUNK_DATA:
            k = len - n < r->left ? len - n : (size_t) r->left;
            r->left -= k;

            if (r->left == 0) {
                r->state = r->state == ST_LENGTH ? ST_DONE : ST_CHUNK_DATA_CR;
            }
            break;

        case ST_UNTIL_CLOSE:
            k = len - n;
            break;

        default:
            (void) chunk_byte(r, (unsigned char) data[n]);
            k = 1;
        }

        n += k;
        r->received += k;
    }

    *used = n;

    return VQ_OK;
}

int
vq_http_response_eof(vq_http_response_t *r)
{
    if (r->state == ST_DONE) {
        return VQ_OK;
    }

    if (r->state == ST_UNTIL_CLOSE) {
        r->state = ST_DONE;
        return VQ_OK;
    }

    if (r->state == ST_FAILED) {
        return VQ_ERROR;
    }

    return fail(r, r->received == 0
                   ? "the collector closed the connection without answering"
                   : "the collector closed the connection in the middle of "
                     "its answer");
}
