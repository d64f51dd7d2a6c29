/*
 * Test helper: leaves a queue with a slot claimed by a writer process that
 * was killed before it published the record, as an OOM kill or a crash in
 * a worker could.  The child pushes big records (so that a kill often
 * lands inside the copy) while the parent drains; the parent kills it,
 * and tries again until the queue head is stalled.
 */

#ifndef VQ_TEST_WEDGE_H
#define VQ_TEST_WEDGE_H

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vaquero/vaquero.h>

/* Returns the stalled position, or VQ_QUEUE_NOT_STALLED after 500 tries. */
static uint64_t
wedge_queue(vq_queue_t *q, size_t rec_size)
{
    struct timespec  ts;
    uint64_t         pos;
    unsigned         seed, attempt;
    size_t           len;
    pid_t            pid;
    char            *rec, *buf;
    int              status, i;

    rec = calloc(1, rec_size);
    buf = malloc(rec_size);
    seed = 7;

    for (attempt = 0; attempt < 500; attempt++) {
        pid = fork();

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

        pos = vq_queue_stalled(q);

        if (pos != VQ_QUEUE_NOT_STALLED) {
            /* a live writer would have published by now: it is stuck */
            ts.tv_sec = 0;
            ts.tv_nsec = 10000000;
            nanosleep(&ts, NULL);

            if (vq_queue_stalled(q) == pos) {
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

#endif /* VQ_TEST_WEDGE_H */
