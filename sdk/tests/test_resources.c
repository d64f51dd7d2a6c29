/*
 * Resources by generation: ranges, equal resources sharing an entry,
 * the oldest forgotten past VQ_RESOURCES_MAX, copies that do not share,
 * generations compared modulo 2^32, and extra attributes kept with them.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vaquero/vaquero.h>
#include <vaquero/resources.h>
#include "check.h"

/* add() with the three strings */
static int
add(vq_resources_t *t, uint32_t generation, const char *service_name,
    const char *project_id, const char *environment)
{
    vq_resource_t  res;

    memset(&res, 0, sizeof(res));
    res.service_name = service_name;
    res.project_id = project_id;
    res.environment = environment;
    res.hostname = "not kept";

    return vq_resources_add(t, generation, &res);
}

static void
test_ranges(void)
{
    vq_resources_t       *t;
    const vq_resource_t  *r, *r3;

    t = vq_resources_create();
    CHECK(t != NULL);

    /* nothing known yet */
    CHECK(vq_resources_find(t, 1) == NULL);

    CHECK_INT(add(t, 3, "edge", "proj-1", "production"), VQ_OK);
    CHECK_INT(add(t, 7, "edge-2", NULL, "development"), VQ_OK);

    /* older than the first: unknown */
    CHECK(vq_resources_find(t, 2) == NULL);

    r3 = vq_resources_find(t, 3);
    CHECK(r3 != NULL);
    CHECK_STR(r3->service_name, "edge");
    CHECK_STR(r3->project_id, "proj-1");
    CHECK_STR(r3->environment, "production");
    CHECK(r3->hostname == NULL && r3->sdk_version == NULL);

    /* an entry holds up to the next one */
    CHECK(vq_resources_find(t, 6) == r3);

    r = vq_resources_find(t, 7);
    CHECK(r != NULL && r != r3);
    CHECK_STR(r->service_name, "edge-2");
    CHECK(r->project_id == NULL);
    CHECK_STR(r->environment, "development");

    /* and the last one on */
    CHECK(vq_resources_find(t, 1000) == r);

    /* generations only go forward */
    CHECK_INT(add(t, 7, "x", NULL, "production"), VQ_EINVAL);
    CHECK_INT(add(t, 5, "x", NULL, "production"), VQ_EINVAL);
    CHECK_INT(add(t, 8, NULL, NULL, "production"), VQ_EINVAL);
    CHECK_INT(add(t, 8, "x", NULL, NULL), VQ_EINVAL);

    /* an equal resource extends the last entry: same pointer */
    CHECK_INT(add(t, 9, "edge-2", NULL, "development"), VQ_OK);
    CHECK(vq_resources_find(t, 9) == r);
    CHECK(vq_resources_find(t, 8) == r);

    /* NULL and "" project ids differ */
    CHECK_INT(add(t, 10, "edge-2", "", "development"), VQ_OK);
    CHECK(vq_resources_find(t, 10) != r);
    CHECK_STR(vq_resources_find(t, 10)->project_id, "");

    vq_resources_destroy(t);
    vq_resources_destroy(NULL);
}

static void
test_oldest_forgotten(void)
{
    vq_resources_t  *t;
    char             name[32];
    uint32_t         g;

    t = vq_resources_create();

    for (g = 1; g <= VQ_RESOURCES_MAX + 5; g++) {
        snprintf(name, sizeof(name), "svc-%u", g);
        CHECK_INT(add(t, g, name, NULL, "production"), VQ_OK);
    }

    for (g = 1; g <= 5; g++) {
        CHECK(vq_resources_find(t, g) == NULL);
    }

    CHECK_STR(vq_resources_find(t, 6)->service_name, "svc-6");
    CHECK_STR(vq_resources_find(t, VQ_RESOURCES_MAX + 5)->service_name,
              "svc-69");

    vq_resources_destroy(t);
}

static void
test_copy(void)
{
    vq_resources_t       *t, *c, *e;
    const vq_resource_t  *r;

    t = vq_resources_create();
    add(t, 1, "a", "p", "production");
    add(t, 2, "b", NULL, "development");

    c = vq_resources_copy(t);
    CHECK(c != NULL);

    /* the copy has its own strings: the original may go */
    add(t, 3, "c", NULL, "production");
    vq_resources_destroy(t);

    r = vq_resources_find(c, 1);
    CHECK(r != NULL);
    CHECK_STR(r->service_name, "a");
    CHECK_STR(r->project_id, "p");
    CHECK_STR(vq_resources_find(c, 2)->service_name, "b");
    CHECK_STR(vq_resources_find(c, 3)->service_name, "b");

    /* and grows on its own */
    CHECK_INT(add(c, 4, "d", NULL, "production"), VQ_OK);
    CHECK_STR(vq_resources_find(c, 4)->service_name, "d");

    e = vq_resources_create();
    vq_resources_destroy(c);
    c = vq_resources_copy(e);
    CHECK(c != NULL && vq_resources_find(c, 1) == NULL);
    vq_resources_destroy(c);
    vq_resources_destroy(e);
}

/* 2^32 generations later, 1 comes after 0xffffffff */
static void
test_wrap(void)
{
    vq_resources_t  *t;

    CHECK(vq_generation_after(1, 0xffffffffU));
    CHECK(!vq_generation_after(0xffffffffU, 1));
    CHECK(!vq_generation_after(5, 5));
    CHECK(vq_generation_after(5, 0));

    t = vq_resources_create();
    CHECK_INT(add(t, 0xfffffffeU, "old", NULL, "production"),
              VQ_OK);
    CHECK_INT(add(t, 2, "new", NULL, "production"), VQ_OK);

    CHECK_STR(vq_resources_find(t, 0xffffffffU)->service_name, "old");
    CHECK_STR(vq_resources_find(t, 0)->service_name, "old");
    CHECK_STR(vq_resources_find(t, 1)->service_name, "old");
    CHECK_STR(vq_resources_find(t, 2)->service_name, "new");
    CHECK(vq_resources_find(t, 0xfffffff0U) == NULL);

    vq_resources_destroy(t);
}

/*
 * Extra attributes (vaquero_resource_attribute) are part of a
 * generation's resource: copied, compared, kept by copies.
 */
static void
test_attributes(void)
{
    vq_resources_t       *t, *c;
    const vq_resource_t  *r1, *r2, *r3;
    vq_resource_t         res;
    vq_kv_t               kv[2];
    char                  value[16];

    t = vq_resources_create();

    memset(&res, 0, sizeof(res));
    res.service_name = "edge";
    res.environment = "production";

    strcpy(value, "1.0.0");
    kv[0].key = "service.version";
    kv[0].value = value;
    kv[1].key = "deployment.region";
    kv[1].value = "eu-1";
    res.attributes = kv;
    res.nattributes = 2;

    CHECK_INT(vq_resources_add(t, 1, &res), VQ_OK);

    /* copied: the caller's strings may change */
    strcpy(value, "2.0.0");

    r1 = vq_resources_find(t, 1);
    CHECK(r1 != NULL && r1->nattributes == 2);
    CHECK_STR(r1->attributes[0].key, "service.version");
    CHECK_STR(r1->attributes[0].value, "1.0.0");
    CHECK_STR(r1->attributes[1].value, "eu-1");

    /* another value: another resource, from generation 2 on */
    CHECK_INT(vq_resources_add(t, 2, &res), VQ_OK);
    r2 = vq_resources_find(t, 2);
    CHECK(r2 != NULL && r2 != vq_resources_find(t, 1));
    CHECK_STR(r2->attributes[0].value, "2.0.0");
    CHECK_STR(vq_resources_find(t, 1)->attributes[0].value, "1.0.0");

    /* the same: the entry holds on */
    CHECK_INT(vq_resources_add(t, 3, &res), VQ_OK);
    CHECK(vq_resources_find(t, 3) == r2);

    /* one attribute fewer: another one */
    res.nattributes = 1;
    CHECK_INT(vq_resources_add(t, 4, &res), VQ_OK);
    r3 = vq_resources_find(t, 4);
    CHECK(r3 != r2 && r3->nattributes == 1);

    /* none at all */
    res.nattributes = 0;
    CHECK_INT(vq_resources_add(t, 5, &res), VQ_OK);
    CHECK(vq_resources_find(t, 5)->nattributes == 0);

    /* incomplete attributes are refused */
    kv[1].value = NULL;
    res.nattributes = 2;
    CHECK_INT(vq_resources_add(t, 6, &res), VQ_EINVAL);

    c = vq_resources_copy(t);
    vq_resources_destroy(t);
    CHECK_STR(vq_resources_find(c, 1)->attributes[0].value, "1.0.0");
    CHECK_STR(vq_resources_find(c, 2)->attributes[0].value, "2.0.0");
    CHECK_INT(vq_resources_find(c, 4)->nattributes, 1);
    vq_resources_destroy(c);
}

int
main(void)
{
    test_ranges();
    test_oldest_forgotten();
    test_copy();
    test_wrap();
    test_attributes();

    return check_summary("test_resources");
}
