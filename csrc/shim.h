/* glexec shim: shared declarations (see docs/internals.md). */
#ifndef GLEXEC_SHIM_H
#define GLEXEC_SHIM_H

#define EXIT_CALLER 201 /* caller's fault: argc == 0, argv/env too large */
#define EXIT_SYSTEM 202 /* untrusted install, namespaces, internal failure */

#define MAX_ARGV 65536
#define MAX_ENV 65536
#define MAX_BLOB (16u * 1024 * 1024)

/* Print "glexec: <what>" (plus optional detail) on fd 2 and _exit(code). */
_Noreturn void die(int code, const char *what, const char *detail);

/* Record the caller facts (sets umask 077) and leave the sealed blob on fd 3. */
void handoff_to_fd3(int argc, char **argv, char **envp, int privileged);

#endif
