/*  hgp_args.h - the arguments of one Redis command, built in place
 *
 *  A batch becomes one command of many arguments (an EVALSHA: keys, then
 *  values), sent with hiredis's argv calls, which take two parallel
 *  arrays: the texts and their lengths. An hgp_args_t holds both, and a
 *  decimal text for every number added, so that building a command
 *  allocates nothing once the room is there. Texts added by pointer stay
 *  the caller's and must live until the command is sent.
 *
 *  The counter, the ledger and the analytics actor build their scripts'
 *  arguments with it; hgp_redis sends it (hgp_redis_append, _eval).
 */
#ifndef HGP_ARGS_H_INCLUDED
#define HGP_ARGS_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct _hgp_args_t hgp_args_t;

hgp_args_t *hgp_args_new (void);
void hgp_args_destroy (hgp_args_t **self_p);

/*  Start a command of at most max arguments: what was added before is
    gone, and the room grows if it must */
void hgp_args_start (hgp_args_t *self, size_t max);

/*  Start an EVALSHA of at most max arguments after the first three:
    "EVALSHA", the script's SHA (set by hgp_redis_eval, or hgp_args_set
    (self, 1, sha, 40)) and the number of keys (0 until hgp_args_set_int
    (self, 2, n) says) */
void hgp_args_evalsha (hgp_args_t *self, size_t max);

/*  Add an argument of len bytes (the text is not copied) */
void hgp_args_add (hgp_args_t *self, const char *arg, size_t len);

/*  Add a NUL-terminated argument (not copied) */
void hgp_args_add_str (hgp_args_t *self, const char *arg);

/*  Add a number as its decimal text, held here. Returns the text. */
const char *hgp_args_add_int (hgp_args_t *self, int64_t value);

/*  Make argument index (added already) a number, e.g. a count of keys
    only known once they are added */
void hgp_args_set_int (hgp_args_t *self, size_t index, int64_t value);

/*  Put text (not copied) at index, added already: the SHA of a script
    after it was loaded again */
void hgp_args_set (hgp_args_t *self, size_t index, const char *arg,
                   size_t len);

/*  The command, for redisCommandArgv and friends */
int hgp_args_count (const hgp_args_t *self);
const char **hgp_args_argv (const hgp_args_t *self);
const size_t *hgp_args_lens (const hgp_args_t *self);

#endif
