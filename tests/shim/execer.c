/* Test helper: execer PATH N ARG... ENV...
 * execs PATH with exactly the N following arguments as argv (N may be 0: argv = {NULL})
 * and the remaining arguments, verbatim, as the whole environment. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int n = atoi(argv[2]);
    if (n < 0 || n > argc - 3)
        return 2;
    char **args = calloc((size_t)n + 1, sizeof *args);
    if (!args)
        return 2;
    for (int i = 0; i < n; i++)
        args[i] = argv[3 + i];
    execve(argv[1], args, argv + 3 + n);
    perror("execve");
    return 127;
}
