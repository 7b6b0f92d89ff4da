/*  util: small helpers every component needs: clocks, hashing, UTF-8 checks, text
    trimming and big-endian key encoding. Pure functions, no allocation unless stated.
*/
#ifndef STRATA_UTIL_H
#define STRATA_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Wall-clock milliseconds since the Unix epoch.
int64_t util_now_ms (void);
//  Monotonic milliseconds, for timeouts.
int64_t util_mono_ms (void);

//  FNV-1a hashes.
uint32_t util_fnv1a32 (const void *data, size_t len);
uint64_t util_fnv1a64 (const void *data, size_t len);
//  The next number of the splitmix64 stream whose state is *state (advanced).
uint64_t util_splitmix64 (uint64_t *state);
uint64_t util_fnv1a64_add (uint64_t h, const void *data, size_t len);
#define UTIL_FNV64_INIT 0xcbf29ce484222325ULL

//  True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool util_utf8_valid (const char *s, size_t len);

//  Converts ISO-8859-1 text to UTF-8 into out (capacity at least 2*len+1). Returns length.
size_t util_latin1_to_utf8 (const char *in, size_t len, char *out);

//  Trims ASCII/Unicode-space bytes at both ends and collapses inner runs of whitespace to
//  one space, in place. Returns the new length.
size_t util_squeeze (char *s);

//  Lower-cases ASCII letters in place.
void util_ascii_lower (char *s);

//  Big-endian encoding for sortable RocksDB keys.
void util_put_be64 (unsigned char *p, uint64_t v);
void util_put_be32 (unsigned char *p, uint32_t v);
uint64_t util_get_be64 (const unsigned char *p);
uint32_t util_get_be32 (const unsigned char *p);

//  Writes a random 64-bit hex id (16 chars + NUL) into out.
void util_random_hex (char out[17]);

#endif
