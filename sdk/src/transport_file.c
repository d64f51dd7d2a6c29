/*
 * The file transport: each body is one line, appended with one write()
 * on a descriptor opened O_APPEND, so that lines written by several
 * processes (nginx workers) to the same file never interleave.
 *
 * The descriptor is the transport's own.  Asked to reopen (the file was
 * moved: logrotate, "nginx -s reopen"), it opens the path again before
 * its next write, in its own thread, and closes the old one only then.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vaquero/vaquero.h>
#include "transport.h"

typedef struct {
    vq_transport_t  t;
    int             fd;
    int             reopen;         /* atomic */
} vq_file_transport_t;

/*
 * A FIFO or a terminal could block a write past any deadline, and lines
 * longer than PIPE_BUF from several workers would mix in a pipe: only a
 * regular file.  O_NONBLOCK keeps a FIFO without a reader from blocking
 * the open itself.
 */
int
vq_transport_file_open(const char *path)
{
    int          fd;
    struct stat  st;

    /* spans hold URLs and headers: for the owner only */
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK,
              0600);
    if (fd == -1) {
        if (errno == ENXIO) {
            /* a FIFO without a reader */
            errno = EINVAL;
        }
        return -1;
    }

    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }

    return fd;
}

static void
file_destroy(vq_transport_t *t)
{
    vq_file_transport_t  *f = (vq_file_transport_t *) t;

    if (f->fd >= 0) {
        close(f->fd);
    }

    free(t->target);
    free(f);
}

static void
file_send(vq_transport_t *t, vq_buf_t *body, vq_send_result_t *r)
{
    vq_file_transport_t  *f = (vq_file_transport_t *) t;
    ssize_t               n;
    int                   fd;

    if (__atomic_exchange_n(&f->reopen, 0, __ATOMIC_ACQ_REL)) {
        fd = vq_transport_file_open(t->target);

        if (fd == -1) {
            /*
             * The old file takes the lines meanwhile, and the next batch
             * tries again; the warning goes with a write that succeeds.
             */
            snprintf(r->warning, sizeof(r->warning), "cannot reopen "
                     "\"%s\"%s: %s, writing to the file it replaced",
                     t->target, errno == EINVAL ? ", not a regular file" : "",
                     strerror(errno));
            __atomic_store_n(&f->reopen, 1, __ATOMIC_RELEASE);

        } else {
            if (f->fd >= 0) {
                close(f->fd);
            }
            f->fd = fd;
        }
    }

    if (f->fd < 0) {
        snprintf(r->error, sizeof(r->error), "\"%s\" is not open",
                 t->target);
        return;
    }

    vq_buf_append(body, "\n", 1);

    if (body->failed) {
        snprintf(r->error, sizeof(r->error), "out of memory");
        return;
    }

    /* one write(): O_APPEND places it whole at the end */
    do {
        n = write(f->fd, body->data, body->len);
    } while (n == -1 && errno == EINTR);

    if (n == (ssize_t) body->len) {
        r->status = 200;
        return;
    }

    if (n == -1) {
        snprintf(r->error, sizeof(r->error), "write() to \"%s\" failed: %s",
                 t->target, strerror(errno));
        return;
    }

    /* a short write (the disk is full): end the broken line, try again */
    snprintf(r->error, sizeof(r->error),
             "write() to \"%s\" wrote %zd of %zu bytes", t->target, n,
             body->len);
    (void) !write(f->fd, "\n", 1);
}

static void
file_reopen(vq_transport_t *t)
{
    vq_file_transport_t  *f = (vq_file_transport_t *) t;

    __atomic_store_n(&f->reopen, 1, __ATOMIC_RELEASE);
}

static const vq_transport_ops_t  file_ops = {
    file_destroy,
    NULL,
    file_send,
    NULL,
    NULL,
    NULL,
    file_reopen
};

vq_transport_t *
vq_transport_file_create(const char *path, int fd, char *err,
    size_t err_size)
{
    vq_file_transport_t  *f;

    if (path == NULL || path[0] != '/') {
        snprintf(err, err_size, "the file's path must be absolute");
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }

    f = calloc(1, sizeof(vq_file_transport_t));
    if (f == NULL) {
        snprintf(err, err_size, "out of memory");
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }

    f->t.ops = &file_ops;
    f->fd = fd;

    f->t.target = strdup(path);
    if (f->t.target == NULL) {
        snprintf(err, err_size, "out of memory");
        file_destroy(&f->t);
        return NULL;
    }

    if (f->fd < 0) {
        f->fd = vq_transport_file_open(path);

        if (f->fd < 0) {
            snprintf(err, err_size, "open() \"%s\" failed: %s%s", path,
                     strerror(errno),
                     errno == EINVAL ? " (not a regular file)" : "");
            file_destroy(&f->t);
            return NULL;
        }
    }

    return &f->t;
}
