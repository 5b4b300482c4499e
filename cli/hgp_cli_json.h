/*  hgp_cli_json.h - the JSON output of bin/hgp, written by jansson
 *
 *  `hgp --json` prints one compact object per result line on stdout.
 *  Jansson writes the JSON; this file holds what jansson does not do for
 *  us, so that every part of the CLI (front end, bench, replay) prints the
 *  same way:
 *  - strings from the network may be any bytes (the codec bounds them, it
 *    does not check UTF-8) and json_string refuses invalid UTF-8, so a
 *    message cut mid-character would vanish: hgp_cli_json_text turns each
 *    byte that is not part of a valid UTF-8 sequence into U+FFFD instead;
 *  - unsigned 64-bit counts and reals that JSON cannot hold (json_int_t is
 *    signed; NaN and infinities have no JSON form).
 *  None of them returns NULL, so they can feed json_pack's "o" directly.
 */
#ifndef HGP_CLI_JSON_H_INCLUDED
#define HGP_CLI_JSON_H_INCLUDED

#include <jansson.h>
#include <stdint.h>

/*  Significant digits of reals: every double exactly (trending scores) */
#define HGP_CLI_JSON_EXACT   17
/*  Enough for a real already rounded to a few decimals (bench seconds) */
#define HGP_CLI_JSON_ROUNDED 15

/*  A JSON string of bytes, each invalid UTF-8 byte replaced by U+FFFD */
json_t *hgp_cli_json_text (const char *bytes);

/*  n, or INT64_MAX if it is larger (no count gets near it) */
json_t *hgp_cli_json_uint (uint64_t n);

/*  x, or null when it is not finite */
json_t *hgp_cli_json_real (double x);

/*  Print *obj_p compactly and a newline on stdout, then free it. digits:
    significant digits of its reals (HGP_CLI_JSON_EXACT or _ROUNDED). */
void hgp_cli_json_print (json_t **obj_p, int digits);

#endif
