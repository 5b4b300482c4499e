/*  hgp_cli_json.c - the JSON output of bin/hgp, written by jansson
 *
 *  See hgp_cli_json.h. The UTF-8 check follows RFC 3629: no overlong
 *  forms, no surrogates, nothing past U+10FFFF, exactly what jansson
 *  accepts, so json_stringn never refuses what this produces.
 */
#include "hgp_cli_json.h"
#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Length of a valid UTF-8 sequence at p, or 0 if it is not one

static int
s_utf8_len (const unsigned char *p)
{
    unsigned char c = p [0];
    int len;
    unsigned char lo = 0x80, hi = 0xbf;     //  range of the second byte
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else
    if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;           //  no overlongs
        if (c == 0xed) hi = 0x9f;           //  no surrogates
    }
    else
    if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;           //  nothing past U+10FFFF
    }
    else
        return 0;
    if (p [1] < lo || p [1] > hi)
        return 0;
    for (int i = 2; i < len; i++)
        if (p [i] < 0x80 || p [i] > 0xbf)
            return 0;
    return len;
}

json_t *
hgp_cli_json_text (const char *bytes)
{
    assert (bytes);
    const unsigned char *p = (const unsigned char *) bytes;
    size_t size = strlen (bytes);
    //  At worst every byte becomes the three of U+FFFD
    char *text = (char *) malloc (3 * size + 1);
    assert (text);
    size_t len = 0;
    while (*p) {
        int n = *p < 0x80 ? 1 : s_utf8_len (p);
        if (n) {
            memcpy (text + len, p, (size_t) n);
            len += (size_t) n;
            p += n;
        }
        else {
            memcpy (text + len, "\xef\xbf\xbd", 3);
            len += 3;
            p++;
        }
    }
    json_t *string = json_stringn (text, len);
    free (text);
    assert (string);
    return string;
}

json_t *
hgp_cli_json_uint (uint64_t n)
{
    return json_integer (n > INT64_MAX ? INT64_MAX : (json_int_t) n);
}

json_t *
hgp_cli_json_real (double x)
{
    return isfinite (x) ? json_real (x) : json_null ();
}

void
hgp_cli_json_print (json_t **obj_p, int digits)
{
    assert (obj_p && *obj_p);
    assert (digits > 0 && digits <= 31);
    json_dumpf (*obj_p, stdout, JSON_COMPACT | JSON_REAL_PRECISION (digits));
    putchar ('\n');
    json_decref (*obj_p);
    *obj_p = NULL;
}
