/*
 * Test helpers: writer processes that die or stop in the middle of a push.
 *
 * wedge_queue() does it at random, as an OOM kill or a crash in a worker
 * could: a child pushes big records (so that a kill often lands inside
 * the copy) while the parent drains; the parent kills it, and tries again
 * until the queue head is stalled.
 *
 * wedge_writer() does it at a chosen point: the child sees the queue's
 * memory from a given page on read-only, faults at its first write there
 * and stops itself in its SIGSEGV handler, after making the memory
 * writable again, so that wedge_continue() lets the push go on where it
 * stopped and SIGKILL leaves it dead there.  wedge_next_slot() tells where the
 * next push will write, without knowing the queue's layout.
 *
 * wedge_fill() and wedge_check() make and check records whose every
 * 4-byte word depends on (writer, seq): a record mixed from two is caught.
 */

#ifndef VQ_TEST_WEDGE_H
#define VQ_TEST_WEDGE_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vaquero/vaquero.h>

#define WEDGE_HDR  12       /* writer, seq, len; at least this long */

static inline void
wedge_fill(void *rec, uint32_t writer, uint32_t seq, size_t len)
{
    uint8_t   *p = rec;
    uint32_t   key, w, l;
    size_t     i;

    l = (uint32_t) len;
    memcpy(p, &writer, 4);
    memcpy(p + 4, &seq, 4);
    memcpy(p + 8, &l, 4);

    key = writer << 24 ^ seq;

    for (i = WEDGE_HDR; i < len; i++) {
        w = key ^ (uint32_t) (i / 4) * 0x9e3779b9u;
        p[i] = (uint8_t) (w >> (i % 4 * 8));
    }
}

/* 1 when rec (len bytes) is whole: what wedge_fill() made, and no more. */
static inline int
wedge_check(const void *rec, size_t len, uint32_t *writer, uint32_t *seq)
{
    const uint8_t  *p = rec;
    uint32_t        key, w, l;
    size_t          i;

    if (len < WEDGE_HDR) {
        return 0;
    }

    memcpy(writer, p, 4);
    memcpy(seq, p + 4, 4);
    memcpy(&l, p + 8, 4);

    if (l != len) {
        return 0;
    }

    key = *writer << 24 ^ *seq;

    for (i = WEDGE_HDR; i < len; i++) {
        w = key ^ (uint32_t) (i / 4) * 0x9e3779b9u;
        if (p[i] != (uint8_t) (w >> (i % 4 * 8))) {
            return 0;
        }
    }

    return 1;
}

static inline void
wedge_pause(long us)
{
    struct timespec  ts;

    ts.tv_sec = us / 1000000;
    ts.tv_nsec = us % 1000000 * 1000;
    nanosleep(&ts, NULL);
}

static inline int64_t
wedge_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Returns the stalled position and its writer's pid (gone by then), or
 * VQ_QUEUE_NOT_STALLED after 500 tries.
 */
static inline uint64_t
wedge_queue(vq_queue_t *q, size_t rec_size, pid_t *writer)
{
    uint64_t  pos;
    unsigned  seed, attempt;
    size_t    len;
    pid_t     pid, w;
    char     *rec, *buf;
    int       status, i;

    rec = calloc(1, rec_size);
    buf = malloc(rec_size);
    seed = 7;

    for (attempt = 0; attempt < 500; attempt++) {
        pid = fork();

        if (pid < 0) {
            break;      /* never kill(-1, ...) */
        }

        if (pid == 0) {
            for ( ;; ) {
                vq_queue_push(q, rec, rec_size);
            }
        }

        /* drain while the child writes; kill it after a few records */
        for (i = 1 + rand_r(&seed) % 8; i > 0; ) {
            if (vq_queue_pop(q, buf, rec_size, &len) == VQ_OK) {
                i--;
            }
        }

        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);

        while (vq_queue_pop(q, buf, rec_size, &len) == VQ_OK) { /* void */ }

        pos = vq_queue_stalled(q, writer);

        if (pos != VQ_QUEUE_NOT_STALLED) {
            /* a live writer would have published by now: it is stuck */
            wedge_pause(10000);

            if (vq_queue_stalled(q, &w) == pos && w == *writer) {
                free(rec);
                free(buf);
                return pos;
            }
        }
    }

    free(rec);
    free(buf);
    return VQ_QUEUE_NOT_STALLED;
}

static inline char *
wedge_find(char *hay, size_t size, const char *needle, size_t len)
{
    char  *p, *end;

    end = hay + size - len;

    for (p = hay; p <= end; p++) {
        p = memchr(p, needle[0], end - p + 1);
        if (p == NULL) {
            return NULL;
        }
        if (memcmp(p, needle, len) == 0) {
            return p;
        }
    }

    return NULL;
}

/*
 * Where in region the next push will put its record's first byte: a
 * unique marker is pushed, found and read back, and small records go
 * round one lap, so that the next push uses the marker's slot again.
 * The queue must be empty; buf holds a record (cap bytes).
 */
static inline char *
wedge_next_slot(vq_queue_t *q, char *region, size_t size, void *buf,
    size_t cap)
{
    static unsigned   n;
    vq_queue_stats_t  st;
    uint64_t          i;
    size_t            len;
    char              marker[48], *at;

    snprintf(marker, sizeof(marker), "<wedge marker %u, %ld>", ++n,
             (long) getpid());

    vq_queue_get_stats(q, &st);

    if (vq_queue_push(q, marker, strlen(marker)) != VQ_OK) {
        return NULL;
    }

    at = wedge_find(region, size, marker, strlen(marker));

    if (vq_queue_pop(q, buf, cap, &len) != VQ_OK) {
        return NULL;
    }

    for (i = 1; i < st.capacity; i++) {
        if (vq_queue_push(q, "x", 1) != VQ_OK
            || vq_queue_pop(q, buf, cap, &len) != VQ_OK)
        {
            return NULL;
        }
    }

    return at;
}

static inline uintptr_t
wedge_page(void)
{
    return (uintptr_t) sysconf(_SC_PAGESIZE);
}

static inline char *
wedge_page_down(char *p)
{
    return (char *) ((uintptr_t) p & ~(wedge_page() - 1));
}

static inline char *
wedge_page_up(char *p)
{
    return wedge_page_down(p + wedge_page() - 1);
}

static char                   *wedge_ro;     /* in the child: what it */
static size_t                  wedge_ro_len; /*   sees read-only */
static volatile sig_atomic_t   wedge_go;     /* wedge_continue() said so */

static inline void
wedge_resume(int sig)
{
    (void) sig;

    wedge_go = 1;
}

static inline void
wedge_fault(int sig)
{
    (void) sig;

    /* writable again: once continued, the faulting write goes on */
    mprotect(wedge_ro, wedge_ro_len, PROT_READ | PROT_WRITE);

    /* a SIGCONT from anyone else (see below) does not end the stop */
    while (!wedge_go) {
        raise(SIGSTOP);
    }
}

/*
 * Starts a process that pushes rec (len bytes) once, seeing [from, end)
 * read-only (from page-aligned): it stops at its first write there.
 * Returns its pid once it has stopped, or -1 if it never wrote there.
 * When continued, it exits with the push's return value negated.
 */
static inline pid_t
wedge_writer(vq_queue_t *q, char *from, char *end, const void *rec,
    size_t len)
{
    struct sigaction  sa;
    pid_t             pid;
    int               status;

    pid = fork();

    if (pid < 0) {
        return -1;
    }

    if (pid == 0) {
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = wedge_fault;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, NULL);
        sa.sa_handler = wedge_resume;
        sigaction(SIGUSR1, &sa, NULL);

        /*
         * Run from a shell that has gone (make test in the background), the
         * process group is orphaned, and the kernel sends SIGHUP, then
         * SIGCONT, to its stopped members whenever one of the others
         * exits: this one must live on, stopped, until it is told.
         */
        signal(SIGHUP, SIG_IGN);

        wedge_ro = from;
        wedge_ro_len = end - from;

        if (mprotect(from, end - from, PROT_READ) != 0) {
            _exit(100);
        }

        _exit(-vq_queue_push(q, rec, len));
    }

    if (waitpid(pid, &status, WUNTRACED) != pid || !WIFSTOPPED(status)) {
        fprintf(stderr, "wedge_writer: the writer did not stop (status %x)\n",
                status);
        return -1;
    }

    return pid;
}

/*
 * Lets it go on (SIGUSR1, delivered on SIGCONT), then the push's return
 * value, or 1 if the writer did not exit.
 */
static inline int
wedge_continue(pid_t pid)
{
    int  status;

    kill(pid, SIGUSR1);
    kill(pid, SIGCONT);

    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
        return 1;
    }

    return -WEXITSTATUS(status);
}

static inline void
wedge_kill(pid_t pid)
{
    int  status;

    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
}

#endif /* VQ_TEST_WEDGE_H */
