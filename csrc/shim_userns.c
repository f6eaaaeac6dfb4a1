/* glexec shim: the /proc/self/uid_map rule, as a pure function so it can be tested and
 * fuzzed on its own (tests/shim/test_uidmap.py, fuzz/fuzz_uidmap.py). */
#include <stddef.h>
#include <string.h>

#include "shim.h"

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

/* 1 iff buf[0..n) is the initial namespace's map: exactly one '\n'-terminated line of the
 * three fields "0" "0" "4294967295", separated (and padded, as the kernel does) by spaces
 * or tabs. Anything else is refused: other spellings of the numbers ("00", "+0"), extra
 * fields or lines, NUL bytes, a missing newline, or n >= UID_MAP_MAX (maybe cut short). */
int uid_map_is_initial(const char *buf, size_t n)
{
    static const char *const want[3] = { "0", "0", "4294967295" };
    size_t i = 0, end = n - 1; /* the newline */

    if (!buf || n == 0 || n >= UID_MAP_MAX || buf[end] != '\n')
        return 0;
    for (int f = 0; f < 3; f++) {
        while (i < end && blank(buf[i]))
            i++;
        size_t start = i;
        while (i < end && !blank(buf[i]))
            i++;
        /* a field is compared as bytes: an embedded NUL or newline never matches */
        if (i - start != strlen(want[f]) || memcmp(buf + start, want[f], i - start))
            return 0;
    }
    while (i < end && blank(buf[i]))
        i++;
    return i == end;
}
