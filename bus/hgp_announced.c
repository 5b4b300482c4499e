/*  hgp_announced.c - announced processes (see hgp_announced.h)
 *
 *  A flat array: at most HGP_PROCESSES_MAX entries, looked up by URL a
 *  few times a second in all, so a scan costs nothing worth a hash.
 */
#include "hgp_announced.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char role [HGP_ID_MAX + 1];
    char metrics [HGP_URL_MAX + 1];
    int64_t heard;
} s_entry_t;

struct _hgp_announced_t {
    s_entry_t entries [HGP_PROCESSES_MAX];
    size_t size;
};

hgp_announced_t *
hgp_announced_new (void)
{
    return (hgp_announced_t *) calloc (1, sizeof (hgp_announced_t));
}

void
hgp_announced_destroy (hgp_announced_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

int
hgp_announced_heard (hgp_announced_t *self, const char *role,
                     const char *metrics, int64_t now)
{
    s_entry_t *e = NULL;
    for (size_t i = 0; i < self->size && !e; i++)
        if (strcmp (self->entries [i].metrics, metrics) == 0)
            e = &self->entries [i];
    if (!e) {
        hgp_announced_expire (self, now);
        if (self->size == HGP_PROCESSES_MAX)
            return -1;
        e = &self->entries [self->size++];
        snprintf (e->metrics, sizeof e->metrics, "%s", metrics);
    }
    snprintf (e->role, sizeof e->role, "%s", role);
    e->heard = now;
    return 0;
}

void
hgp_announced_expire (hgp_announced_t *self, int64_t now)
{
    size_t kept = 0;
    for (size_t i = 0; i < self->size; i++)
        if (now - self->entries [i].heard <= HGP_ANNOUNCE_TTL_MS)
            self->entries [kept++] = self->entries [i];
    self->size = kept;
}

size_t
hgp_announced_size (hgp_announced_t *self)
{
    return self->size;
}

int
hgp_announced_list (hgp_announced_t *self, int64_t now, hgp_reply_t *rep)
{
    hgp_announced_expire (self, now);
    rep->processes = (hgp_process_info_t *) calloc (
        self->size ? self->size : 1, sizeof (hgp_process_info_t));
    if (!rep->processes)
        return -1;
    rep->nprocesses = self->size;
    for (size_t i = 0; i < self->size; i++) {
        hgp_process_info_t *p = &rep->processes [i];
        strcpy (p->role, self->entries [i].role);
        strcpy (p->metrics, self->entries [i].metrics);
        int64_t idle = now - self->entries [i].heard;
        p->idle_ms = idle < 0 ? 0 : (uint32_t) idle;
    }
    return 0;
}
