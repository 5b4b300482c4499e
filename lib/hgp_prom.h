/*  hgp_prom.h - a process's Prometheus series, and their text exposition
 *
 *  Every hgp process declares the series it exports once (a family name,
 *  its labels, a help line), then adds to or sets them from the thread
 *  that owns the numbers; hgp_exporter (or the gateway's own HTTP loop)
 *  renders them from another thread. A value is one relaxed atomic, so
 *  recording costs what an integer add costs and a scrape never blocks
 *  the owner.
 *
 *  Every render also carries what Prometheus expects of any process
 *  (process_cpu_seconds_total, process_resident_memory_bytes,
 *  process_virtual_memory_bytes, process_start_time_seconds,
 *  process_open_fds, process_max_fds, read from /proc/self) and
 *  hgp_build_info{process, version} 1. Text format 0.0.4; names end in
 *  their unit, counters in _total; error codes and the like are labels.
 */
#ifndef HGP_PROM_H_INCLUDED
#define HGP_PROM_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HGP_PROM_SERIES_MAX 256         /* series of one process            */

typedef enum { HGP_PROM_COUNTER, HGP_PROM_GAUGE } hgp_prom_type_t;

typedef struct _hgp_prom_t hgp_prom_t;

/*  A registry for the process called process ("broker", "counter", ...:
    the process label of hgp_build_info) */
hgp_prom_t *hgp_prom_new (const char *process);
void hgp_prom_destroy (hgp_prom_t **self_p);

/*  Declare one series of family name (e.g. "hgp_broker_answers_total"),
    with labels "" or `code="busy"` (several: `a="x",b="y"`). Values are
    integers; scale > 1 renders value / scale (1000000: microseconds
    kept, seconds shown). Series of one family share help and type; the
    first declaration's count. Returns the series' handle, or -1 when the
    registry is full or name or labels are not well-formed. Declare from
    the owner's thread; a render sees a series once it is declared. */
int hgp_prom_declare (hgp_prom_t *self, hgp_prom_type_t type,
                      const char *name, const char *labels,
                      const char *help, int64_t scale);

/*  Change a series (a handle of -1 is ignored, so a failed declare costs
    a series, not a check at every call site) */
void hgp_prom_add (hgp_prom_t *self, int series, int64_t delta);
void hgp_prom_set (hgp_prom_t *self, int series, int64_t value);
int64_t hgp_prom_get (hgp_prom_t *self, int series);

/*  A counter family by reply status (label status="200", ... "504", and
    "other"): declare it into handles (HGP_PROM_STATUSES of them), then
    count one reply of a status */
#define HGP_PROM_STATUSES 9
void hgp_prom_declare_statuses (hgp_prom_t *self, const char *name,
                                const char *help, int *handles);
void hgp_prom_count_status (hgp_prom_t *self, const int *handles,
                            int status);

/*  A growable text for an exposition, that stops growing when out of
    memory (failed; then free data and answer 500). init allocates. */
typedef struct {
    char *data;
    size_t size;
    size_t alloc;
    bool failed;
} hgp_prom_text_t;

void hgp_prom_text_init (hgp_prom_text_t *text);
void hgp_prom_printf (hgp_prom_text_t *text, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

/*  The whole exposition, to free; NULL when out of memory. Any thread. */
char *hgp_prom_render (hgp_prom_t *self);

#endif
