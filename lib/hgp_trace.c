/*  hgp_trace.c - W3C traceparent (see hgp_trace.h) */
#include "hgp_trace.h"
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool
s_hex (const char *s, size_t n, bool *zero)
{
    *zero = true;
    for (size_t i = 0; i < n; i++) {
        char c = s [i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        if (c != '0')
            *zero = false;
    }
    return true;
}

bool
hgp_trace_parse (const char *text, char *trace_id, bool *sampled)
{
    bool zero;
    if (!text || strlen (text) != HGP_TRACE_SIZE - 1
    ||  text [2] != '-' || text [35] != '-' || text [52] != '-'
    ||  !s_hex (text, 2, &zero) || strncmp (text, "ff", 2) == 0
    ||  !s_hex (text + 3, 32, &zero) || zero
    ||  !s_hex (text + 36, 16, &zero) || zero
    ||  !s_hex (text + 53, 2, &zero))
        return false;
    if (trace_id) {
        memcpy (trace_id, text + 3, 32);
        trace_id [32] = 0;
    }
    if (sampled) {
        unsigned flags = 0;
        sscanf (text + 53, "%2x", &flags);
        *sampled = (flags & 1) != 0;
    }
    return true;
}

void
hgp_trace_format (char *out, const char *trace_id, uint64_t span,
                  bool sampled)
{
    snprintf (out, HGP_TRACE_SIZE, "00-%.32s-%016" PRIx64 "-%s", trace_id,
              span ? span : 1, sampled ? "01" : "00");
}

bool
hgp_trace_sampled (const char *text)
{
    bool sampled = false;
    return text && *text && hgp_trace_parse (text, NULL, &sampled) && sampled;
}
