/*  hgp_http_parser.c - HTTP/1.1 request heads and chunked bodies (see .h)
 *
 *  A head is parsed once, when its blank line has arrived: the search for
 *  CRLF CRLF is the only work done on partial heads, and the caller
 *  resumes it where it stopped. Then one pass over the lines checks and
 *  cuts them into NUL-terminated strings in place.
 */
#define _GNU_SOURCE                 //  memmem
#include "hgp_http_parser.h"
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int
s_refuse (hgp_http_error_t *err, int status, const char *code,
          const char *message)
{
    err->status = status;
    err->code = code;
    err->framing = false;
    snprintf (err->message, sizeof err->message, "%s", message);
    return -1;
}

//  RFC 9110 5.6.2 tchar
static bool
s_tchar (unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
    ||  (c >= '0' && c <= '9'))
        return true;
    return c && strchr ("!#$%&'*+-.^_`|~", c) != NULL;
}

//  Whether text is a comma-separated list holding token (any case)
static bool
s_list_has (const char *text, const char *token)
{
    size_t want = strlen (token);
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if ((size_t) (p - start) == want && strncasecmp (start, token, want) == 0)
            return true;
        while (*p && *p != ',')
            p++;
    }
    return false;
}

//  Digits, or a list of the same digits ("5, 5"); *value is it
static bool
s_content_length (const char *text, int64_t *value)
{
    bool have = false;
    const char *p = text;
    while (true) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p < '0' || *p > '9')
            return false;
        int64_t v = 0;
        while (*p >= '0' && *p <= '9') {
            if (v > 999999999999999LL)
                return false;           //  no body of ours is a petabyte
            v = v * 10 + (*p++ - '0');
        }
        if (have && v != *value)
            return false;
        *value = v;
        have = true;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == 0)
            return true;
        if (*p++ != ',')
            return false;
    }
}

//  The request line, NUL-terminated in place: METHOD SP TARGET SP VERSION
static int
s_request_line (char *line, hgp_http_head_t *head, hgp_http_error_t *err)
{
    char *p = line;
    head->method = p;
    while (s_tchar ((unsigned char) *p))
        p++;
    if (p == line || *p != ' ' || p - line > 16)
        return s_refuse (err, 400, "malformed",
                         "the request line must be METHOD SP TARGET SP "
                         "HTTP/1.1");
    *p++ = 0;
    head->target = p;
    while ((unsigned char) *p > 0x20 && (unsigned char) *p < 0x7f)
        p++;
    if (p == head->target || *p != ' ')
        return s_refuse (err, 400, "malformed",
                         "the request target must be one word of visible "
                         "ASCII, then one space and the HTTP version");
    *p++ = 0;
    if (strncmp (p, "HTTP/", 5) != 0 || p [5] < '0' || p [5] > '9'
    ||  p [6] != '.' || p [7] < '0' || p [7] > '9' || p [8])
        return s_refuse (err, 400, "malformed",
                         "the request line must end in HTTP/1.0 or HTTP/1.1");
    if (p [5] != '1' || (p [7] != '0' && p [7] != '1'))
        return s_refuse (err, 505, "unsupported",
                         "only HTTP/1.0 and HTTP/1.1 are served here");
    head->minor = p [7] - '0';
    return 0;
}

//  One header line "Name: value", cut in place
static int
s_header_line (char *line, hgp_http_head_t *head, hgp_http_error_t *err)
{
    if (*line == ' ' || *line == '\t')
        return s_refuse (err, 400, "malformed",
                         "a header line starts with white space (obsolete "
                         "line folding is refused, RFC 9112 5.2)");
    char *p = line;
    while (s_tchar ((unsigned char) *p))
        p++;
    if (p == line || *p != ':')
        return s_refuse (err, 400, "malformed",
                         "a header line must be Name: value, with no space "
                         "before the colon");
    if (head->nheaders == HGP_HTTP_HEADERS_MAX)
        return s_refuse (err, 431, "too_large",
                         "more than 64 header lines");
    *p++ = 0;
    while (*p == ' ' || *p == '\t')
        p++;
    char *end = p + strlen (p);
    while (end > p && (end [-1] == ' ' || end [-1] == '\t'))
        *--end = 0;
    for (char *c = p; c < end; c++)
        if ((unsigned char) *c < 0x20 && *c != '\t')
            return s_refuse (err, 400, "malformed",
                             "a header value holds a control character");
    head->headers [head->nheaders].name = line;
    head->headers [head->nheaders].value = p;
    head->nheaders++;
    return 0;
}

//  What the headers say about the body and the connection
static int
s_framing (hgp_http_head_t *head, hgp_http_error_t *err)
{
    int lengths = 0, encodings = 0;
    const char *encoding = NULL;
    bool close = false, keep = false;
    for (int i = 0; i < head->nheaders; i++) {
        const char *name = head->headers [i].name;
        const char *value = head->headers [i].value;
        if (strcasecmp (name, "Content-Length") == 0) {
            int64_t length = 0;
            if (!s_content_length (value, &length)
            ||  (lengths && length != head->content_length))
                goto ambiguous;
            head->content_length = length;
            lengths++;
        }
        else
        if (strcasecmp (name, "Transfer-Encoding") == 0) {
            encoding = value;
            encodings++;
        }
        else
        if (strcasecmp (name, "Connection") == 0) {
            close |= s_list_has (value, "close");
            keep |= s_list_has (value, "keep-alive");
        }
        else
        if (strcasecmp (name, "Expect") == 0)
            head->expect_continue = strcasecmp (value, "100-continue") == 0;
    }
    if (encodings > 1 || (encodings && lengths)
    ||  (encodings && head->minor == 0))
        goto ambiguous;
    if (encodings) {
        if (strcasecmp (encoding, "chunked") != 0)
            return s_refuse (err, 501, "unsupported",
                             "the only transfer coding served here is "
                             "chunked");
        head->chunked = true;
    }
    head->keep_alive = !close && (head->minor == 1 || keep);
    return 0;

ambiguous:
    s_refuse (err, 400, "malformed",
        "the body's length is ambiguous (Transfer-Encoding with "
        "Content-Length, or Content-Length values that differ or are not "
        "a number); refused and the connection closed (RFC 9112 6.3)");
    err->framing = true;
    return -1;
}

int
hgp_http_parse_head (char *buf, size_t len, size_t limit,
                     hgp_http_head_t *head, size_t *skipped,
                     hgp_http_error_t *err)
{
    size_t start = 0;
    while (start + 1 < len && buf [start] == '\r' && buf [start + 1] == '\n')
        start += 2;
    *skipped = start;
    //  The blank line that ends the head
    char *begin = buf + start;
    size_t have = len - start;
    char *end = have >= 4 ? (char *) memmem (begin, have, "\r\n\r\n", 4)
                          : NULL;
    if (!end) {
        if (have >= limit)
            return s_refuse (err, 431, "too_large",
                             "the request's head is larger than this "
                             "gateway takes");
        return 0;
    }
    size_t size = (size_t) (end - begin) + 4;
    if (size > limit)
        return s_refuse (err, 431, "too_large",
                         "the request's head is larger than this gateway "
                         "takes");
    memset (head, 0, sizeof *head);
    head->content_length = -1;
    head->size = size;
    //  Every line ends in CRLF: a lone CR or LF, or a NUL, is refused
    for (char *c = begin; c < end + 2; c++) {
        if (*c == 0)
            return s_refuse (err, 400, "malformed", "the head holds a NUL");
        if ((*c == '\r' && c [1] != '\n')
        ||  (*c == '\n' && (c == begin || c [-1] != '\r')))
            return s_refuse (err, 400, "malformed",
                             "a line of the head does not end in CRLF");
    }
    char *line = begin;
    bool first = true;
    while (line < end + 2) {
        char *eol = (char *) memchr (line, '\r', (size_t) (end + 2 - line));
        *eol = 0;
        eol [1] = 0;
        int rc = first ? s_request_line (line, head, err)
                       : s_header_line (line, head, err);
        if (rc)
            return rc;
        first = false;
        line = eol + 2;
    }
    if (s_framing (head, err))
        return -1;
    return 1;
}

const char *
hgp_http_head_get (const hgp_http_head_t *head, const char *name)
{
    for (int i = 0; i < head->nheaders; i++)
        if (strcasecmp (head->headers [i].name, name) == 0)
            return head->headers [i].value;
    return NULL;
}


/*  --------------------------------------------------------------------
 *  Chunked bodies (RFC 9112 7.1)
 */

typedef enum {
    S_SIZE = 0,                     /* hex digits of a chunk's size         */
    S_EXT,                          /* ;extension up to CR                  */
    S_SIZE_LF,                      /* the LF after the size line's CR      */
    S_DATA,                         /* remaining data bytes                 */
    S_DATA_CR,                      /* CRLF after the data                  */
    S_DATA_LF,
    S_TRAILER,                      /* a trailer line, or the blank line    */
    S_TRAILER_LF
} s_chunk_state_t;

#define S_LINE_MAX  1024            /* a size line or trailer line          */

void
hgp_http_chunked_init (hgp_http_chunked_t *self)
{
    memset (self, 0, sizeof *self);
}

static int64_t
s_bad_chunk (hgp_http_error_t *err, const char *why)
{
    s_refuse (err, 400, "malformed", why);
    return -1;
}

static int
s_hex (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int64_t
hgp_http_chunked_feed (hgp_http_chunked_t *self, const char *in, size_t len,
                       char *out, size_t *out_len, size_t out_max,
                       hgp_http_error_t *err)
{
    size_t i = 0;
    while (i < len && !self->done) {
        char c = in [i];
        switch (self->state) {
            case S_SIZE:
                if (s_hex (c) >= 0) {
                    if (++self->digits > 15)
                        return s_bad_chunk (err, "a chunk size is too large");
                    self->remaining = self->remaining * 16
                                    + (uint64_t) s_hex (c);
                    i++;
                    break;
                }
                if (!self->digits)
                    return s_bad_chunk (err, "a chunk size is not hex digits");
                self->state = S_EXT;
                self->line = 0;
                break;
            case S_EXT:
                if (c == '\r')
                    self->state = S_SIZE_LF;
                else
                if (c == '\n' || c == 0 || ++self->line > S_LINE_MAX
                ||  (self->line == 1 && c != ';' && c != ' ' && c != '\t'))
                    return s_bad_chunk (err, "a bad chunk size line");
                i++;
                break;
            case S_SIZE_LF:
                if (c != '\n')
                    return s_bad_chunk (err, "a chunk size line without LF");
                i++;
                self->digits = 0;
                self->line = 0;
                self->state = self->remaining ? S_DATA : S_TRAILER;
                break;
            case S_DATA: {
                size_t take = len - i;
                if ((uint64_t) take > self->remaining)
                    take = (size_t) self->remaining;
                if (*out_len + take > out_max) {
                    s_refuse (err, 413, "too_large",
                              "the chunked body is larger than this endpoint "
                              "takes");
                    return -1;
                }
                memcpy (out + *out_len, in + i, take);
                *out_len += take;
                self->remaining -= take;
                i += take;
                if (!self->remaining)
                    self->state = S_DATA_CR;
                break;
            }
            case S_DATA_CR:
            case S_DATA_LF:
                if (c != (self->state == S_DATA_CR ? '\r' : '\n'))
                    return s_bad_chunk (err, "a chunk's data is not followed "
                                             "by CRLF");
                i++;
                self->state = self->state == S_DATA_CR ? S_DATA_LF : S_SIZE;
                break;
            case S_TRAILER:
                if (c == '\r')
                    self->state = S_TRAILER_LF;
                else
                if (c == '\n' || c == 0 || ++self->line > S_LINE_MAX)
                    return s_bad_chunk (err, "a bad trailer line");
                i++;
                break;
            case S_TRAILER_LF:
                if (c != '\n')
                    return s_bad_chunk (err, "a trailer line without LF");
                i++;
                if (self->line == 0)
                    self->done = true;
                self->line = 0;
                self->state = S_TRAILER;
                break;
        }
    }
    return (int64_t) i;
}

const char *
hgp_http_status_text (int status)
{
    switch (status) {
        case 100: return "Continue";
        case 200: return "OK";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 413: return "Content Too Large";
        case 421: return "Misdirected Request";
        case 422: return "Unprocessable Content";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        case 505: return "HTTP Version Not Supported";
        default:  return status < 400 ? "OK" : status < 500 ? "Bad Request"
                                                           : "Server Error";
    }
}
