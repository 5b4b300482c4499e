/*  hgp_lua.h - the Lua scripts that Redis runs for us, embedded at build time
 *
 *  Every script is a .lua file next to the C that calls it, and each
 *  file's comment is the script's contract (KEYS, ARGV, what it returns).
 *  scripts/lua_embed.sh turns each file into a generated C file under
 *  build/ that defines hgp_lua_<file name> as the file's bytes, so the
 *  text Redis compiles is exactly the text a reader sees, and a test can
 *  load each script into a plain redis-server by itself
 *  (tests/unit/test_lua.c). The owners hand these to hgp_redis_script.
 *
 *  Adding a script: add the .lua file (the Makefile finds it) and its
 *  declaration here; the generated index includes this header, so a file
 *  without a declaration fails the build.
 */
#ifndef HGP_LUA_H_INCLUDED
#define HGP_LUA_H_INCLUDED

#include <stddef.h>

//  actors/counter: the plain path, and step 1 of the logged path
extern const char hgp_lua_counter_incr [];
extern const char hgp_lua_counter_prepare [];

//  lib (hgp_ledger): applying events, and the actors' registry
extern const char hgp_lua_ledger_apply [];
extern const char hgp_lua_ledger_register [];
extern const char hgp_lua_ledger_advance [];
extern const char hgp_lua_ledger_leave [];
extern const char hgp_lua_ledger_forget [];
extern const char hgp_lua_ledger_fence [];

//  actors/analytics: folding events into rankings, and the state's epoch
extern const char hgp_lua_analytics_fold [];
extern const char hgp_lua_analytics_merge [];
extern const char hgp_lua_analytics_state [];

//  Every embedded script, for tests: ends with a NULL name
typedef struct {
    const char *name;           /* the file's base name                    */
    const char *file;           /* the .lua file, from the tree's root     */
    const char *source;         /* its text                                */
} hgp_lua_script_t;

extern const hgp_lua_script_t hgp_lua_scripts [];

#endif
