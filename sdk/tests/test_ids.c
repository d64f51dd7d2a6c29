/*
 * Id generation: sizes, never zero, no repeats, distinct across fork().
 */

#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vaquero/vaquero.h>
#include "check.h"

#define N  200000

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t  x = *(const uint64_t *) a, y = *(const uint64_t *) b;

    return x < y ? -1 : x > y;
}

static void
test_span_ids_unique_nonzero(void)
{
    vq_idgen_t  *g;
    uint64_t    *ids;
    size_t       i, zero, dup;

    g = vq_idgen_create();
    CHECK(g != NULL);

    ids = malloc(N * sizeof(uint64_t));
    zero = 0;

    for (i = 0; i < N; i++) {
        vq_span_id_generate(g, (uint8_t *) &ids[i]);
        zero += ids[i] == 0;
    }

    qsort(ids, N, sizeof(uint64_t), cmp_u64);

    dup = 0;
    for (i = 1; i < N; i++) {
        dup += ids[i] == ids[i - 1];
    }

    CHECK_INT(zero, 0);
    CHECK_INT(dup, 0);

    free(ids);
    vq_idgen_destroy(g);
}

static void
test_trace_ids(void)
{
    vq_idgen_t  *g;
    uint8_t      a[16], b[16];
    unsigned     i, bits_set;

    g = vq_idgen_create();

    bits_set = 0;
    for (i = 0; i < 1000; i++) {
        vq_trace_id_generate(g, a);
        CHECK(!vq_id_is_zero(a, 16));
        CHECK((a[6] & 0xf0) == 0x40);       /* UUID version 4 */
        CHECK((a[8] & 0xc0) == 0x80);       /* UUID variant 10 */
        bits_set += __builtin_popcountll(*(uint64_t *) a)
                    + __builtin_popcountll(*(uint64_t *) (a + 8));
    }

    /* a fair generator sets about half of the 122 free bits, plus 2 fixed */
    CHECK(bits_set / 1000 >= 60 && bits_set / 1000 <= 68);

    vq_trace_id_generate(g, a);
    vq_trace_id_generate(g, b);
    CHECK(memcmp(a, b, 16) != 0);

    vq_idgen_destroy(g);
}

static void
test_formatting(void)
{
    uint8_t  id[16] = { 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                        0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36 };
    char     out[64];

    memset(out, 0, sizeof(out));
    vq_id_to_hex(id, 16, out);
    CHECK_STR(out, "4bf92f3577b34da6a3ce929d0e0e4736");

    memset(out, 0, sizeof(out));
    vq_id_to_hex(id, 8, out);
    CHECK_STR(out, "4bf92f3577b34da6");

    memset(out, 0, sizeof(out));
    vq_trace_id_to_uuid(id, out);
    CHECK_STR(out, "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");

    CHECK(vq_id_is_zero((uint8_t[8]) { 0 }, 8));
}

/* A child that reseeds after fork() must not repeat its parent's ids. */
static void
test_fork_reseed(void)
{
    vq_idgen_t  *g;
    uint64_t    *shared, mine;
    pid_t        pid;
    int          status;

    g = vq_idgen_create();
    shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    pid = fork();
    if (pid == 0) {
        vq_idgen_reseed(g);
        vq_span_id_generate(g, (uint8_t *) &shared[0]);
        _exit(0);
    }

    waitpid(pid, &status, 0);
    vq_idgen_reseed(g);
    vq_span_id_generate(g, (uint8_t *) &mine);

    CHECK(shared[0] != 0);
    CHECK(mine != shared[0]);

    munmap(shared, 4096);
    vq_idgen_destroy(g);
}

int
main(void)
{
    test_span_ids_unique_nonzero();
    test_trace_ids();
    test_formatting();
    test_fork_reseed();

    return check_summary("test_ids");
}
