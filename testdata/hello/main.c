#include <stdio.h>
#include "config.h"

typedef unsigned (*entry_fn)(unsigned);
extern const entry_fn entries[];
extern const unsigned nentries;

int main(int argc, char **argv)
{
    unsigned i, sum = 1;
    (void)argv;
    for (i = 0; i < nentries; i++)
        sum = entries[i](sum + (unsigned)argc);
    printf("%s\n", GREETING);
    printf("version %s, %u files, checksum %08x\n", VERSION, nentries, sum);
    return 0;
}
