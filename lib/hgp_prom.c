/*  hgp_prom.c - a process's Prometheus series (see hgp_prom.h)
 *
 *  Series live in a fixed array; the count of declared ones is published
 *  with a release store after the slot is filled, so a render on another
 *  thread reads only finished slots and never needs a lock. Families are
 *  printed together (HELP and TYPE once) in the order of their first
 *  series, whatever the order of declaration.
 */
#include "hgp_prom.h"
#include "hgp_process.h"
#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define S_NAME_MAX      96
#define S_LABELS_MAX    160
#define S_HELP_MAX      200

typedef struct {
    hgp_prom_type_t type;
    char name [S_NAME_MAX];
    char labels [S_LABELS_MAX];
    char help [S_HELP_MAX];
    int64_t scale;
    atomic_int_fast64_t value;
} s_series_t;

struct _hgp_prom_t {
    char process [64];
    atomic_int count;                   /* slots declared and filled        */
    s_series_t series [HGP_PROM_SERIES_MAX];
};



hgp_prom_t *
hgp_prom_new (const char *process)
{
    hgp_prom_t *self = (hgp_prom_t *) calloc (1, sizeof *self);
    if (self)
        snprintf (self->process, sizeof self->process, "%s", process);
    return self;
}

void
hgp_prom_destroy (hgp_prom_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

//  [a-zA-Z_:][a-zA-Z0-9_:]*
static bool
s_name_valid (const char *name)
{
    if (!name || !*name || strlen (name) >= S_NAME_MAX || isdigit (*name))
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum ((unsigned char) *p) && *p != '_' && *p != ':')
            return false;
    return true;
}

//  name="value" pairs separated by commas; values without " or \ or newline
static bool
s_labels_valid (const char *labels)
{
    if (strlen (labels) >= S_LABELS_MAX)
        return false;
    const char *p = labels;
    while (*p) {
        const char *eq = strchr (p, '=');
        if (!eq || eq == p || eq [1] != '"')
            return false;
        for (const char *q = p; q < eq; q++)
            if (!isalnum ((unsigned char) *q) && *q != '_')
                return false;
        const char *end = strchr (eq + 2, '"');
        if (!end)
            return false;
        for (const char *q = eq + 2; q < end; q++)
            if (*q == '\\' || *q == '\n')
                return false;
        p = end + 1;
        if (*p == ',')
            p++;
        else
        if (*p)
            return false;
    }
    return true;
}

int
hgp_prom_declare (hgp_prom_t *self, hgp_prom_type_t type, const char *name,
                  const char *labels, const char *help, int64_t scale)
{
    int count = atomic_load_explicit (&self->count, memory_order_relaxed);
    if (count >= HGP_PROM_SERIES_MAX || !s_name_valid (name)
    ||  !s_labels_valid (labels ? labels : "") || scale < 1)
        return -1;
    s_series_t *s = &self->series [count];
    s->type = type;
    snprintf (s->name, sizeof s->name, "%s", name);
    snprintf (s->labels, sizeof s->labels, "%s", labels ? labels : "");
    //  HELP text: one line, no backslashes
    snprintf (s->help, sizeof s->help, "%s", help ? help : "");
    for (char *p = s->help; *p; p++)
        if (*p == '\n' || *p == '\\')
            *p = ' ';
    s->scale = scale;
    atomic_store_explicit (&s->value, 0, memory_order_relaxed);
    atomic_store_explicit (&self->count, count + 1, memory_order_release);
    return count;
}

void
hgp_prom_add (hgp_prom_t *self, int series, int64_t delta)
{
    if (series >= 0 && series < HGP_PROM_SERIES_MAX)
        atomic_fetch_add_explicit (&self->series [series].value, delta,
                                   memory_order_relaxed);
}

void
hgp_prom_set (hgp_prom_t *self, int series, int64_t value)
{
    if (series >= 0 && series < HGP_PROM_SERIES_MAX)
        atomic_store_explicit (&self->series [series].value, value,
                               memory_order_relaxed);
}

int64_t
hgp_prom_get (hgp_prom_t *self, int series)
{
    if (series < 0 || series >= HGP_PROM_SERIES_MAX)
        return 0;
    return atomic_load_explicit (&self->series [series].value,
                                 memory_order_relaxed);
}


static const int s_statuses [HGP_PROM_STATUSES - 1] = {
    200, 400, 404, 409, 413, 500, 503, 504
};

void
hgp_prom_declare_statuses (hgp_prom_t *self, const char *name,
                           const char *help, int *handles)
{
    char labels [32];
    for (int i = 0; i < HGP_PROM_STATUSES; i++) {
        if (i < HGP_PROM_STATUSES - 1)
            snprintf (labels, sizeof labels, "status=\"%d\"", s_statuses [i]);
        else
            snprintf (labels, sizeof labels, "status=\"other\"");
        handles [i] = hgp_prom_declare (self, HGP_PROM_COUNTER, name, labels,
                                        help, 1);
    }
}

void
hgp_prom_count_status (hgp_prom_t *self, const int *handles, int status)
{
    int i = 0;
    while (i < HGP_PROM_STATUSES - 1 && s_statuses [i] != status)
        i++;
    hgp_prom_add (self, handles [i], 1);
}

/*  --------------------------------------------------------------------
 *  Text
 */

void
hgp_prom_text_init (hgp_prom_text_t *text)
{
    text->alloc = 4096;
    text->size = 0;
    text->data = (char *) malloc (text->alloc);
    text->failed = text->data == NULL;
    if (text->data)
        text->data [0] = 0;
}

void
hgp_prom_printf (hgp_prom_text_t *text, const char *format, ...)
{
    if (text->failed)
        return;
    while (true) {
        va_list args;
        va_start (args, format);
        int n = vsnprintf (text->data + text->size, text->alloc - text->size,
                           format, args);
        va_end (args);
        if (n < 0) {
            text->failed = true;
            return;
        }
        if ((size_t) n < text->alloc - text->size) {
            text->size += (size_t) n;
            return;
        }
        size_t alloc = text->alloc * 2 + (size_t) n;
        char *data = (char *) realloc (text->data, alloc);
        if (!data) {
            text->failed = true;
            return;
        }
        text->data = data;
        text->alloc = alloc;
    }
}

static void
s_value (hgp_prom_text_t *text, const s_series_t *s, int64_t value)
{
    if (s->scale == 1)
        hgp_prom_printf (text, "%lld\n", (long long) value);
    else
        hgp_prom_printf (text, "%.9g\n", (double) value / (double) s->scale);
}

static void
s_render_series (hgp_prom_t *self, hgp_prom_text_t *text, int count)
{
    for (int i = 0; i < count; i++) {
        const s_series_t *s = &self->series [i];
        bool first = true;
        for (int j = 0; j < i && first; j++)
            first = strcmp (self->series [j].name, s->name) != 0;
        if (!first)
            continue;               //  printed with its family already
        hgp_prom_printf (text, "# HELP %s %s\n# TYPE %s %s\n", s->name, s->help,
                  s->name, s->type == HGP_PROM_COUNTER ? "counter" : "gauge");
        for (int j = i; j < count; j++) {
            const s_series_t *m = &self->series [j];
            if (strcmp (m->name, s->name))
                continue;
            int64_t value = atomic_load_explicit (&m->value,
                                                  memory_order_relaxed);
            if (m->labels [0])
                hgp_prom_printf (text, "%s{%s} ", m->name, m->labels);
            else
                hgp_prom_printf (text, "%s ", m->name);
            s_value (text, m, value);
        }
    }
}

//  Boot time from /proc/stat, seconds since the epoch; 0 if unknown
static long long
s_boot_time (void)
{
    FILE *file = fopen ("/proc/stat", "r");
    if (!file)
        return 0;
    char line [256];
    long long btime = 0;
    while (fgets (line, sizeof line, file))
        if (sscanf (line, "btime %lld", &btime) == 1)
            break;
    fclose (file);
    return btime;
}

static int
s_open_fds (void)
{
    DIR *dir = opendir ("/proc/self/fd");
    if (!dir)
        return -1;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir (dir)))
        if (entry->d_name [0] != '.')
            count++;
    closedir (dir);
    return count - 1;               //  less the one opendir holds
}

static void
s_render_process (hgp_prom_t *self, hgp_prom_text_t *text)
{
    FILE *file = fopen ("/proc/self/stat", "r");
    char stat [1024] = "";
    if (file) {
        size_t n = fread (stat, 1, sizeof stat - 1, file);
        stat [n] = 0;
        fclose (file);
    }
    //  Fields after "(comm)": 3 state ... 14 utime 15 stime ... 22
    //  starttime 23 vsize 24 rss
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
    char *p = strrchr (stat, ')');
    if (p && sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                     "%llu %llu %*d %*d %*d %*d %*d %*d %llu %llu %llu",
                     &utime, &stime, &start, &vsize, &rss) == 5) {
        double tick = (double) sysconf (_SC_CLK_TCK);
        double page = (double) sysconf (_SC_PAGESIZE);
        hgp_prom_printf (text,
            "# HELP process_cpu_seconds_total User and system CPU time.\n"
            "# TYPE process_cpu_seconds_total counter\n"
            "process_cpu_seconds_total %.2f\n"
            "# HELP process_resident_memory_bytes Resident memory.\n"
            "# TYPE process_resident_memory_bytes gauge\n"
            "process_resident_memory_bytes %.0f\n"
            "# HELP process_virtual_memory_bytes Virtual memory.\n"
            "# TYPE process_virtual_memory_bytes gauge\n"
            "process_virtual_memory_bytes %llu\n",
            (double) (utime + stime) / tick, (double) rss * page, vsize);
        long long boot = s_boot_time ();
        if (boot > 0)
            hgp_prom_printf (text,
                "# HELP process_start_time_seconds When the process started,"
                " seconds since the epoch.\n"
                "# TYPE process_start_time_seconds gauge\n"
                "process_start_time_seconds %.2f\n",
                (double) boot + (double) start / tick);
    }
    int fds = s_open_fds ();
    if (fds >= 0)
        hgp_prom_printf (text,
            "# HELP process_open_fds Open file descriptors.\n"
            "# TYPE process_open_fds gauge\n"
            "process_open_fds %d\n", fds);
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0)
        hgp_prom_printf (text,
            "# HELP process_max_fds The open-files limit.\n"
            "# TYPE process_max_fds gauge\n"
            "process_max_fds %llu\n", (unsigned long long) limit.rlim_cur);
    hgp_prom_printf (text,
        "# HELP hgp_build_info The hgp release this process runs.\n"
        "# TYPE hgp_build_info gauge\n"
        "hgp_build_info{process=\"%s\",version=\"%s\"} 1\n",
        self->process, HGP_VERSION);
}

char *
hgp_prom_render (hgp_prom_t *self)
{
    hgp_prom_text_t text;
    hgp_prom_text_init (&text);
    int count = atomic_load_explicit (&self->count, memory_order_acquire);
    s_render_series (self, &text, count);
    s_render_process (self, &text);
    if (text.failed) {
        free (text.data);
        return NULL;
    }
    return text.data;
}
