/*
 * Resources by generation: a short array of entries in increasing order
 * of generation, each holding from its generation up to the next entry's.
 */

#include <stdlib.h>
#include <string.h>

#include <vaquero/vaquero.h>
#include <vaquero/resources.h>

typedef struct {
    uint32_t       generation;
    vq_resource_t  res;
} vq_resources_entry_t;

struct vq_resources_s {
    vq_resources_entry_t  *entries;
    size_t                 n;
    size_t                 cap;
};

vq_resources_t *
vq_resources_create(void)
{
    return calloc(1, sizeof(vq_resources_t));
}

static void
entry_free(vq_resources_entry_t *e)
{
    size_t  i;

    free((char *) e->res.service_name);
    free((char *) e->res.project_id);
    free((char *) e->res.environment);

    for (i = 0; i < e->res.nattributes; i++) {
        free((char *) e->res.attributes[i].key);
        free((char *) e->res.attributes[i].value);
    }

    free((vq_kv_t *) e->res.attributes);
}

static int
copy_attributes(vq_resource_t *to, const vq_resource_t *res)
{
    vq_kv_t  *kv;
    size_t    i;

    if (res->nattributes == 0) {
        return VQ_OK;
    }

    kv = calloc(res->nattributes, sizeof(vq_kv_t));
    if (kv == NULL) {
        return VQ_ENOMEM;
    }

    to->attributes = kv;

    for (i = 0; i < res->nattributes; i++) {
        kv[i].key = strdup(res->attributes[i].key);
        kv[i].value = strdup(res->attributes[i].value);
        to->nattributes++;

        if (kv[i].key == NULL || kv[i].value == NULL) {
            return VQ_ENOMEM;
        }
    }

    return VQ_OK;
}

void
vq_resources_destroy(vq_resources_t *t)
{
    size_t  i;

    if (t == NULL) {
        return;
    }

    for (i = 0; i < t->n; i++) {
        entry_free(&t->entries[i]);
    }

    free(t->entries);
    free(t);
}

/* What is kept of a resource (and compared, and freed): see resources.h. */
static int
entry_set(vq_resources_entry_t *e, uint32_t generation,
    const vq_resource_t *res)
{
    memset(e, 0, sizeof(vq_resources_entry_t));

    e->generation = generation;
    e->res.service_name = strdup(res->service_name);
    e->res.project_id = res->project_id ? strdup(res->project_id) : NULL;
    e->res.environment = strdup(res->environment);

    if (e->res.service_name == NULL || e->res.environment == NULL
        || (res->project_id && e->res.project_id == NULL)
        || copy_attributes(&e->res, res) != VQ_OK)
    {
        entry_free(e);
        return VQ_ENOMEM;
    }

    return VQ_OK;
}

static int
same_string(const char *a, const char *b)
{
    return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

static int
entry_is(const vq_resources_entry_t *e, const vq_resource_t *res)
{
    size_t  i;

    if (!same_string(res->service_name, e->res.service_name)
        || !same_string(res->project_id, e->res.project_id)
        || !same_string(res->environment, e->res.environment)
        || res->nattributes != e->res.nattributes)
    {
        return 0;
    }

    for (i = 0; i < res->nattributes; i++) {
        if (!same_string(res->attributes[i].key, e->res.attributes[i].key)
            || !same_string(res->attributes[i].value,
                            e->res.attributes[i].value))
        {
            return 0;
        }
    }

    return 1;
}

int
vq_resources_add(vq_resources_t *t, uint32_t generation,
    const vq_resource_t *res)
{
    vq_resources_entry_t  *last, *entries;
    size_t                 cap, i;

    if (res->service_name == NULL || res->environment == NULL) {
        return VQ_EINVAL;
    }

    for (i = 0; i < res->nattributes; i++) {
        if (res->attributes[i].key == NULL
            || res->attributes[i].value == NULL)
        {
            return VQ_EINVAL;
        }
    }

    if (t->n > 0) {
        last = &t->entries[t->n - 1];

        if (!vq_generation_after(generation, last->generation)) {
            return VQ_EINVAL;
        }

        if (entry_is(last, res)) {
            return VQ_OK;                   /* the last entry holds on */
        }
    }

    if (t->n == VQ_RESOURCES_MAX) {
        /* the oldest generations go: spans that old are long sent */
        entry_free(&t->entries[0]);
        memmove(&t->entries[0], &t->entries[1],
                (t->n - 1) * sizeof(vq_resources_entry_t));
        t->n--;

    } else if (t->n == t->cap) {
        cap = t->cap ? 2 * t->cap : 4;
        if (cap > VQ_RESOURCES_MAX) {
            cap = VQ_RESOURCES_MAX;
        }

        entries = realloc(t->entries, cap * sizeof(vq_resources_entry_t));
        if (entries == NULL) {
            return VQ_ENOMEM;
        }

        t->entries = entries;
        t->cap = cap;
    }

    if (entry_set(&t->entries[t->n], generation, res) != VQ_OK) {
        return VQ_ENOMEM;
    }

    t->n++;

    return VQ_OK;
}

vq_resources_t *
vq_resources_copy(const vq_resources_t *t)
{
    vq_resources_t  *c;
    size_t           i;

    c = vq_resources_create();
    if (c == NULL) {
        return NULL;
    }

    if (t->n == 0) {
        return c;
    }

    c->entries = malloc(t->n * sizeof(vq_resources_entry_t));
    if (c->entries == NULL) {
        free(c);
        return NULL;
    }

    c->cap = t->n;

    for (i = 0; i < t->n; i++) {
        if (entry_set(&c->entries[i], t->entries[i].generation,
                      &t->entries[i].res)
            != VQ_OK)
        {
            vq_resources_destroy(c);
            return NULL;
        }

        c->n++;
    }

    return c;
}

const vq_resource_t *
vq_resources_find(const vq_resources_t *t, uint32_t generation)
{
    size_t  i;

    /* from the newest: nearly every span is of the last generation */
    for (i = t->n; i > 0; i--) {
        if (!vq_generation_after(t->entries[i - 1].generation, generation)) {
            return &t->entries[i - 1].res;
        }
    }

    return NULL;
}
