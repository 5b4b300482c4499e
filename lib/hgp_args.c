/*  hgp_args.c - the arguments of one Redis command, built in place (see .h)
 *
 *  Every argument index has a number slot of its own, so a number's text
 *  stays where it is until the next start, however many follow it.
 */
#include "hgp_args.h"
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_NUMBER_MAX    24          /* "-9223372036854775808" and a NUL    */

struct _hgp_args_t {
    const char **argv;              /* the texts                            */
    size_t *lens;                   /* ... and their lengths                */
    char (*numbers) [S_NUMBER_MAX]; /* the text of a number at that index   */
    size_t room;                    /* entries in each of the three         */
    size_t count;                   /* arguments added                      */
};

hgp_args_t *
hgp_args_new (void)
{
    hgp_args_t *self = (hgp_args_t *) calloc (1, sizeof (hgp_args_t));
    assert (self);
    return self;
}

void
hgp_args_destroy (hgp_args_t **self_p)
{
    assert (self_p);
    hgp_args_t *self = *self_p;
    if (!self)
        return;
    free (self->argv);
    free (self->lens);
    free (self->numbers);
    free (self);
    *self_p = NULL;
}

void
hgp_args_start (hgp_args_t *self, size_t max)
{
    assert (self);
    self->count = 0;
    if (max <= self->room)
        return;
    //  Nothing added refers to the old room any more: it may move
    free (self->argv);
    free (self->lens);
    free (self->numbers);
    self->argv = (const char **) calloc (max, sizeof (char *));
    self->lens = (size_t *) calloc (max, sizeof (size_t));
    self->numbers = calloc (max, S_NUMBER_MAX);
    assert (self->argv && self->lens && self->numbers);
    self->room = max;
}

void
hgp_args_evalsha (hgp_args_t *self, size_t max)
{
    hgp_args_start (self, max + 3);
    hgp_args_add (self, "EVALSHA", 7);
    hgp_args_add (self, "", 0);
    hgp_args_add_int (self, 0);
}

void
hgp_args_add (hgp_args_t *self, const char *arg, size_t len)
{
    assert (self);
    assert (self->count < self->room);
    self->argv [self->count] = arg;
    self->lens [self->count] = len;
    self->count++;
}

void
hgp_args_add_str (hgp_args_t *self, const char *arg)
{
    hgp_args_add (self, arg, strlen (arg));
}

const char *
hgp_args_add_int (hgp_args_t *self, int64_t value)
{
    assert (self);
    assert (self->count < self->room);
    self->count++;
    hgp_args_set_int (self, self->count - 1, value);
    return self->argv [self->count - 1];
}

void
hgp_args_set_int (hgp_args_t *self, size_t index, int64_t value)
{
    assert (self);
    assert (index < self->count);
    char *text = self->numbers [index];
    int len = snprintf (text, S_NUMBER_MAX, "%" PRId64, value);
    self->argv [index] = text;
    self->lens [index] = (size_t) len;
}

void
hgp_args_set (hgp_args_t *self, size_t index, const char *arg, size_t len)
{
    assert (self);
    assert (index < self->count);
    self->argv [index] = arg;
    self->lens [index] = len;
}

int
hgp_args_count (const hgp_args_t *self)
{
    assert (self);
    return (int) self->count;
}

const char **
hgp_args_argv (const hgp_args_t *self)
{
    assert (self);
    return self->argv;
}

const size_t *
hgp_args_lens (const hgp_args_t *self)
{
    assert (self);
    return self->lens;
}
