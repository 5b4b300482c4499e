/*  fuzz_mutate.h - the mutation step shared by the gcc-built smoke fuzzers
 *
 *  fuzz_smoke (msgpack codec) and test_fuzz_json (gateway JSON) mutate
 *  valid seeds the same way; each adds mutations of its own (hostile
 *  msgpack headers, JSON tokens) for the cases where fuzz_mutate_step
 *  returns false. Deterministic for a given state, so failures reproduce.
 */
#ifndef FUZZ_MUTATE_H_INCLUDED
#define FUZZ_MUTATE_H_INCLUDED

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*  splitmix64 */
static inline uint64_t
fuzz_rand (uint64_t *state)
{
    uint64_t x = (*state += 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/*  Apply mutation `kind` at byte `at` of work[0..*size) (capacity max):
    0 flip a bit, 1 overwrite a byte, 2 cut, 3 duplicate the whole input.
    Returns false for any other kind, which the caller handles. */
static inline bool
fuzz_mutate_step (uint8_t *work, size_t *size, size_t max, size_t at,
                  unsigned kind, uint64_t *state)
{
    switch (kind) {
        case 0: work [at] ^= (uint8_t) (1u << (fuzz_rand (state) % 8)); return true;
        case 1: work [at] = (uint8_t) fuzz_rand (state); return true;
        case 2: *size = at; return true;
        case 3:
            if (*size * 2 < max) {
                memcpy (work + *size, work, *size);
                *size *= 2;
            }
            return true;
    }
    return false;
}

/*  Insert token (n bytes) at `at` if it fits in max */
static inline void
fuzz_splice (uint8_t *work, size_t *size, size_t max, size_t at,
             const char *token, size_t n)
{
    if (*size + n < max) {
        memmove (work + at + n, work + at, *size - at);
        memcpy (work + at, token, n);
        *size += n;
    }
}

/*  Run fn (arg) on a thread with a stack of stack bytes, and wait for it:
    a decoder that recurses too deep crashes here, not only in production */
static inline void
fuzz_on_stack (size_t stack, void *(*fn) (void *), void *arg)
{
    pthread_attr_t attr;
    pthread_t thread;
    if (pthread_attr_init (&attr)
    ||  pthread_attr_setstacksize (&attr, stack)
    ||  pthread_create (&thread, &attr, fn, arg))
        abort ();
    pthread_attr_destroy (&attr);
    pthread_join (thread, NULL);
}

#endif
