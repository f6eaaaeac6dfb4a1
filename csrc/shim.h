/* glexec shim: shared declarations (see docs/internals.md). */
#ifndef GLEXEC_SHIM_H
#define GLEXEC_SHIM_H

#include <stddef.h>

#define EXIT_CALLER 201 /* caller's fault: argc == 0, argv/env too large, FSIZE too small */
#define EXIT_SYSTEM 202 /* untrusted install, namespaces, internal failure */

#define MAX_ARGV 65536
#define MAX_ENV 65536
#define MAX_BLOB (16u * 1024 * 1024)

/* Print "glexec: <what>" (plus optional detail) on fd 2 and _exit(code). */
_Noreturn void die(int code, const char *what, const char *detail);

/* One read() of /proc/self/uid_map takes at most this many bytes; a map that fills them
 * may have been cut short and is refused. */
#define UID_MAP_MAX 255

/* 1 iff the n bytes are the initial user namespace's uid_map (csrc/shim_userns.c). */
int uid_map_is_initial(const char *buf, size_t n);

/* Record the caller facts (sets umask 077) and leave the sealed blob on fd 3. */
void handoff_to_fd3(int argc, char **argv, char **envp, int privileged);

/* Service mode (csrc/shim_service.c): 1 if the engine service took the call, 0 to fall back
 * to exec'ing the engine; then, as full root, run its plan and exit with its verdict. */
int service_offer(void);
_Noreturn void service_run(void);

#endif
