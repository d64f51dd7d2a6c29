/*
 * The pieces under the exporter thread, alone: Retry-After values, the
 * endpoint check that nginx -t shares, the mode presets, gzip, and the
 * file transport (one write() per body, mode 0600, reopen after a move,
 * lines from several processes never interleaved).
 */

#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include <vaquero/vaquero.h>
#include "check.h"

static void
test_retry_after(void)
{
    int64_t  now;

    /* 2015-10-21 07:28:00 UTC, and 250 ms */
    now = 1445412480LL * 1000 + 250;

    CHECK_INT(vq_retry_after_parse("2", now), 2000);
    CHECK_INT(vq_retry_after_parse("0", now), 0);
    CHECK_INT(vq_retry_after_parse(" 17 ", now), 17000);
    CHECK_INT(vq_retry_after_parse("60", now), 60000);

    /* bounded */
    CHECK_INT(vq_retry_after_parse("61", now), VQ_RETRY_AFTER_MAX_MS);
    CHECK_INT(vq_retry_after_parse("3600", now), VQ_RETRY_AFTER_MAX_MS);
    CHECK_INT(vq_retry_after_parse("99999999999999999999999999", now),
              VQ_RETRY_AFTER_MAX_MS);

    /* HTTP-dates: IMF-fixdate, RFC 850 and asctime */
    CHECK_INT(vq_retry_after_parse("Wed, 21 Oct 2015 07:28:03 GMT", now),
              2750);
    CHECK_INT(vq_retry_after_parse("Wednesday, 21-Oct-15 07:28:10 GMT", now),
              9750);
    CHECK_INT(vq_retry_after_parse("Wed Oct 21 07:28:30 2015", now), 29750);
    CHECK_INT(vq_retry_after_parse("Wed, 21 Oct 2015 08:28:00 GMT", now),
              VQ_RETRY_AFTER_MAX_MS);

    /* a date past: now */
    CHECK_INT(vq_retry_after_parse("Wed, 21 Oct 2015 07:00:00 GMT", now), 0);

    /* garbage */
    CHECK_INT(vq_retry_after_parse("", now), -1);
    CHECK_INT(vq_retry_after_parse("soon", now), -1);
    CHECK_INT(vq_retry_after_parse("-5", now), -1);
    CHECK_INT(vq_retry_after_parse("1.5", now), -1);
    CHECK_INT(vq_retry_after_parse("5 seconds", now), -1);
    CHECK_INT(vq_retry_after_parse("Wed, 99 Foo 2015 07:28:03 GMT", now), -1);
}

static void
check_endpoint(const char *ep, int want, const char *why)
{
    char  err[256];
    int   rc;

    err[0] = '\0';
    rc = vq_endpoint_check(ep, strlen(ep), err, sizeof(err));

    if (rc != want || (why && strstr(err, why) == NULL)) {
        check_failed++;
        fprintf(stderr, "endpoint \"%s\": %d \"%s\", want %d \"%s\"\n", ep, rc,
                err, want, why ? why : "");
    } else {
        check_passed++;
    }
}

static void
test_endpoints(void)
{
    char  *url;

    check_endpoint("http://127.0.0.1:4318", VQ_ENDPOINT_HTTP, NULL);
    check_endpoint("https://api.vaquero.app", VQ_ENDPOINT_HTTP, NULL);
    check_endpoint("HTTPS://API.example.com/base/", VQ_ENDPOINT_HTTP, NULL);
    check_endpoint("Http://host:80/a/b", VQ_ENDPOINT_HTTP, NULL);
    check_endpoint("http://[::1]:4318", VQ_ENDPOINT_HTTP, NULL);
    check_endpoint("http://[::1]", VQ_ENDPOINT_HTTP, NULL);
    check_endpoint("file:/var/log/nginx/spans.jsonl", VQ_ENDPOINT_FILE, NULL);
    check_endpoint("FILE:/x", VQ_ENDPOINT_FILE, NULL);

    check_endpoint("ftp://host", VQ_EINVAL, "must start with");
    check_endpoint("host:4318", VQ_EINVAL, "must start with");
    check_endpoint("http:/host", VQ_EINVAL, "must start with");
    check_endpoint("", VQ_EINVAL, "must start with");
    check_endpoint("http://", VQ_EINVAL, "no host");
    check_endpoint("https:///path", VQ_EINVAL, "no host");
    check_endpoint("http://:80", VQ_EINVAL, "no host");
    check_endpoint("http://host:", VQ_EINVAL, "invalid port");
    check_endpoint("http://host:0", VQ_EINVAL, "invalid port");
    check_endpoint("http://host:65536", VQ_EINVAL, "invalid port");
    check_endpoint("http://host:8o", VQ_EINVAL, "invalid port");
    check_endpoint("http://[::1", VQ_EINVAL, "IPv6");
    check_endpoint("http://[::1]x", VQ_EINVAL, "invalid port");
    check_endpoint("http://u:p@host", VQ_EINVAL, "user name");
    check_endpoint("http://host/?a=1", VQ_EINVAL, "query");
    check_endpoint("http://host#x", VQ_EINVAL, "query");
    check_endpoint("http://ho st", VQ_EINVAL, "white space");
    check_endpoint("http://host\n", VQ_EINVAL, "white space");
    check_endpoint("file:relative/path", VQ_EINVAL, "absolute");
    check_endpoint("file:", VQ_EINVAL, "absolute");
    check_endpoint("file:/var/log/", VQ_EINVAL, "directory");
    check_endpoint("file://host/x", VQ_EINVAL, "no host");
    check_endpoint("file:///x", VQ_EINVAL, "no host");

    /* what the shape allows but libcurl would refuse at every export */
    check_endpoint("http://ho^st/api", VQ_EINVAL, "libcurl");
    check_endpoint("http://[zz]/x", VQ_EINVAL, "libcurl");
    check_endpoint("http://exa mple", VQ_EINVAL, "white space");

    url = vq_endpoint_url("HTTPS://Host.Example/base//", "/v1/traces");
    CHECK_STR(url, "https://Host.Example/base/v1/traces");
    free(url);

    url = vq_endpoint_url("http://h", "/api/v1/traces/batch");
    CHECK_STR(url, "http://h/api/v1/traces/batch");
    free(url);

    CHECK_STR(vq_endpoint_file_path("file:/a/b"), "/a/b");
}

static void
test_presets(void)
{
    const vq_preset_t  *p;

    p = vq_mode_preset(VQ_MODE_PRODUCTION);
    CHECK(p != NULL);
    CHECK_STR(p->environment, "production");
    CHECK_INT(p->batch_size, 100);
    CHECK_INT(p->flush_interval_ms, 5000);
    CHECK_INT(p->capture_headers, 0);

    p = vq_mode_preset(VQ_MODE_DEVELOPMENT);
    CHECK(p != NULL);
    CHECK_STR(p->environment, "development");
    CHECK_INT(p->batch_size, 10);
    CHECK_INT(p->flush_interval_ms, 2000);
    CHECK_INT(p->capture_headers, 1);

    CHECK(vq_mode_preset(2) == NULL);
}

static void
test_gzip(void)
{
    vq_buf_t    in, out;
    z_stream    z;
    char       *back;
    size_t      i, first;
    vq_gzip_t  *gz;

    gz = vq_gzip_create();
    CHECK(gz != NULL);

    vq_buf_init(&in);
    vq_buf_init(&out);

    for (i = 0; i < 5000; i++) {
        char  line[64];
        int   n = snprintf(line, sizeof(line), "{\"span\":%zu,\"x\":\"%c\"}",
                           i, (char) ('a' + i % 26));
        vq_buf_append(&in, line, (size_t) n);
    }

    vq_buf_append(&out, "prefix", 6);
    CHECK_INT(vq_gzip(gz, &out, in.data, in.len), VQ_OK);
    CHECK(out.len > 6 + 18 && out.len < in.len / 4);
    first = out.len;

    /* a gzip member (RFC 1952 magic), after what the buffer held */
    CHECK(memcmp(out.data, "prefix", 6) == 0);
    CHECK((unsigned char) out.data[6] == 0x1f
          && (unsigned char) out.data[7] == 0x8b);

    back = malloc(in.len);
    memset(&z, 0, sizeof(z));
    inflateInit2(&z, 15 + 16);
    z.next_in = (Bytef *) out.data + 6;
    z.avail_in = (uInt) out.len - 6;
    z.next_out = (Bytef *) back;
    z.avail_out = (uInt) in.len;
    CHECK_INT(inflate(&z, Z_FINISH), Z_STREAM_END);
    CHECK_INT(z.total_out, in.len);
    CHECK(memcmp(back, in.data, in.len) == 0);
    inflateEnd(&z);

    /* nothing in, a valid empty member out */
    vq_buf_reset(&out);
    CHECK_INT(vq_gzip(gz, &out, "", 0), VQ_OK);
    CHECK(out.len >= 18);

    /* the state is reset for each body: the same bytes again, whole */
    vq_buf_reset(&out);
    CHECK_INT(vq_gzip(gz, &out, in.data, in.len), VQ_OK);
    CHECK_INT(out.len, first - 6);
    memset(back, 0, in.len);
    memset(&z, 0, sizeof(z));
    inflateInit2(&z, 15 + 16);
    z.next_in = (Bytef *) out.data;
    z.avail_in = (uInt) out.len;
    z.next_out = (Bytef *) back;
    z.avail_out = (uInt) in.len;
    CHECK_INT(inflate(&z, Z_FINISH), Z_STREAM_END);
    CHECK_INT(z.total_out, in.len);
    CHECK(memcmp(back, in.data, in.len) == 0);
    inflateEnd(&z);

    vq_gzip_destroy(gz);
    free(back);
    vq_buf_free(&in);
    vq_buf_free(&out);
}

static int
send_line(vq_transport_t *t, const char *s, vq_send_result_t *r)
{
    vq_buf_t  b;

    vq_buf_init(&b);
    vq_buf_append(&b, s, strlen(s));
    vq_transport_send(t, &b, r);
    vq_buf_free(&b);

    return r->status == 200 ? VQ_OK : VQ_ERROR;
}

static char *
slurp(const char *path)
{
    FILE    *fp;
    char    *s;
    long     n;

    fp = fopen(path, "r");
    if (fp == NULL) {
        return strdup("");
    }

    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    s = calloc(1, (size_t) n + 1);
    if (fread(s, 1, (size_t) n, fp) != (size_t) n) {
        s[0] = '\0';
    }
    fclose(fp);

    return s;
}

/*
 * One body, one write(): on a SOCK_SEQPACKET socket each write() arrives
 * as one message, so the messages are the writes.
 */
static void
test_file_one_write(void)
{
    vq_transport_t    *t;
    vq_send_result_t   r;
    char               err[256], msg[65536];
    int                sv[2];
    ssize_t            n;
    int                i;

    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);

    t = vq_transport_file_create("/nonexistent/never-opened", sv[0], err,
                                 sizeof(err));
    CHECK(t != NULL);
    CHECK_STR(vq_transport_target(t), "/nonexistent/never-opened");
    CHECK_INT(vq_transport_set_headers(t, NULL, 0), VQ_OK);

    CHECK_INT(send_line(t, "{\"traces\":[1,2,3]}", &r), VQ_OK);
    CHECK_INT(r.status, 200);
    CHECK_INT(send_line(t, "{\"traces\":[]}", &r), VQ_OK);

    for (i = 0; i < 2; i++) {
        n = recv(sv[1], msg, sizeof(msg) - 1, MSG_DONTWAIT);
        CHECK(n > 0);
        msg[n > 0 ? n : 0] = '\0';
        CHECK_STR(msg, i == 0 ? "{\"traces\":[1,2,3]}\n" : "{\"traces\":[]}\n");
    }

    /* nothing more: exactly one write per body */
    CHECK(recv(sv[1], msg, sizeof(msg), MSG_DONTWAIT) == -1);

    vq_transport_destroy(t);
    close(sv[1]);
}

/*
 * Created 0600; after a move and a reopen request the next body goes to
 * a new file at the path (0600 too), the old one keeps what it had; a
 * reopen that fails leaves the old file in use.
 */
static void
test_file_reopen(void)
{
    vq_transport_t    *t;
    vq_send_result_t   r;
    struct stat        st;
    char               dir[64], path[128], moved[128], err[256], *s;

    snprintf(dir, sizeof(dir), "/tmp/vq-test-transport-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/spans.jsonl", dir);
    snprintf(moved, sizeof(moved), "%s/spans.jsonl.1", dir);

    CHECK(vq_transport_file_create("relative.jsonl", -1, err, sizeof(err))
          == NULL);
    CHECK(vq_transport_file_create("/nonexistent/dir/x.jsonl", -1, err,
                                   sizeof(err))
          == NULL);
    CHECK(strstr(err, "/nonexistent/dir/x.jsonl") != NULL);

    t = vq_transport_file_create(path, -1, err, sizeof(err));
    CHECK(t != NULL);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

    CHECK_INT(send_line(t, "one", &r), VQ_OK);
    CHECK(rename(path, moved) == 0);
    CHECK_INT(send_line(t, "two", &r), VQ_OK);     /* still the old file */

    vq_transport_reopen(t);
    CHECK_INT(send_line(t, "three", &r), VQ_OK);

    s = slurp(moved);
    CHECK_STR(s, "one\ntwo\n");
    free(s);
    s = slurp(path);
    CHECK_STR(s, "three\n");
    free(s);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

    /*
     * A reopen that fails: the file in use takes the line, with a warning,
     * and every later write tries again until one succeeds.
     */
    CHECK(unlink(path) == 0);
    CHECK(rmdir(dir) == -1);
    CHECK(unlink(moved) == 0);
    CHECK(rmdir(dir) == 0);
    vq_transport_reopen(t);
    CHECK_INT(send_line(t, "four", &r), VQ_OK);
    CHECK(strstr(r.warning, "cannot reopen") != NULL);
    CHECK_INT(send_line(t, "five", &r), VQ_OK);
    CHECK(strstr(r.warning, "cannot reopen") != NULL);

    CHECK(mkdir(dir, 0700) == 0);
    CHECK_INT(send_line(t, "six", &r), VQ_OK);
    CHECK_STR(r.warning, "");
    s = slurp(path);
    CHECK_STR(s, "six\n");
    free(s);
    CHECK_INT(send_line(t, "seven", &r), VQ_OK);
    s = slurp(path);
    CHECK_STR(s, "six\nseven\n");
    free(s);

    vq_transport_destroy(t);
    unlink(path);
    rmdir(dir);

    /* not a regular file: refused, at creation and at a reopen */
    CHECK(vq_transport_file_create("/dev/null", -1, err, sizeof(err))
          == NULL);
    CHECK(strstr(err, "not a regular file") != NULL);
    snprintf(dir, sizeof(dir), "/tmp/vq-test-transport-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/fifo", dir);
    CHECK(mkfifo(path, 0600) == 0);
    CHECK(vq_transport_file_create(path, -1, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "not a regular file") != NULL);
    unlink(path);
    rmdir(dir);
}

/*
 * Four processes append long lines to one file at once: every line is
 * whole (O_APPEND, one write() each), none is lost.
 */
#define WRITERS  4
#define LINES    300

static void
test_file_concurrent(void)
{
    vq_transport_t    *t;
    vq_send_result_t   r;
    vq_buf_t           b;
    char               path[64], err[256], *s, *p, *nl;
    size_t             len, count[WRITERS], bad;
    pid_t              pids[WRITERS];
    int                w, i, status, k;

    snprintf(path, sizeof(path), "/tmp/vq-test-lines-%d.jsonl", (int) getpid());
    unlink(path);

    for (w = 0; w < WRITERS; w++) {
        pids[w] = fork();

        if (pids[w] == 0) {
            t = vq_transport_file_create(path, -1, err, sizeof(err));
            if (t == NULL) {
                _exit(1);
            }

            vq_buf_init(&b);

            for (i = 0; i < LINES; i++) {
                /* 1 KB to 200 KB: far past PIPE_BUF and a page */
                len = 1024 + (size_t) ((i * 7919 + w * 104729) % 200000);
                vq_buf_reset(&b);
                vq_buf_append(&b, "{\"w\":", 5);
                vq_buf_append(&b, (char[]) { (char) ('0' + w) }, 1);
                vq_buf_append(&b, ",\"x\":\"", 6);
                for (k = 0; (size_t) k < len; k++) {
                    vq_buf_append(&b, (char[]) { (char) ('a' + w) }, 1);
                }
                vq_buf_append(&b, "\"}", 2);
                vq_transport_send(t, &b, &r);
                if (r.status != 200) {
                    _exit(2);
                }
            }

            vq_buf_free(&b);
            vq_transport_destroy(t);
            _exit(0);
        }
    }

    for (w = 0; w < WRITERS; w++) {
        CHECK(waitpid(pids[w], &status, 0) == pids[w]
              && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }

    memset(count, 0, sizeof(count));
    bad = 0;
    s = slurp(path);

    for (p = s; *p; p = nl + 1) {
        nl = strchr(p, '\n');
        if (nl == NULL) {
            bad++;
            break;
        }

        /* {"w":N,"x":"<one letter, all the same>"} */
        w = p[5] - '0';
        if (strncmp(p, "{\"w\":", 5) != 0 || w < 0 || w >= WRITERS
            || nl - p < 13 || nl[-1] != '}' || nl[-2] != '"')
        {
            bad++;
            continue;
        }

        for (k = 12; p + k < nl - 2; k++) {
            if (p[k] != 'a' + w) {
                break;
            }
        }

        if (p + k != nl - 2) {
            bad++;
            continue;
        }

        count[w]++;
    }

    CHECK_INT(bad, 0);
    for (w = 0; w < WRITERS; w++) {
        CHECK_INT(count[w], LINES);
    }

    free(s);
    unlink(path);
}

int
main(void)
{
    test_retry_after();
    test_endpoints();
    test_presets();
    test_gzip();
    test_file_one_write();
    test_file_reopen();
    test_file_concurrent();

    return check_summary("test_transport");
}
