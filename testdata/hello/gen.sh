#!/bin/sh
# gen.sh NFILES FUNCS DIR [HELPER]: write NFILES deterministic C files (FUNCS
# functions each) into DIR, plus DIR/table.c that lists their entry points.
# HELPER prefixes the helper functions' names (default "g"); long names
# land in the debug strings of objects compiled with -g.
set -eu
n=$1
funcs=$2
dir=$3
helper=${4:-g}

awk -v n="$n" -v funcs="$funcs" -v dir="$dir" -v helper="$helper" '
BEGIN {
    for (f = 0; f < n; f++) {
        file = sprintf("%s/f%04d.c", dir, f)
        printf "/* generated file %d */\n#include \"../config.h\"\n\n", f > file
        for (k = 0; k < funcs; k++) {
            m1 = (f * 7 + k * 13) % 29 + 3
            m2 = (f * 11 + k * 5) % 31 + 2
            printf "static unsigned %s%d_%d(unsigned x, const unsigned char *s, unsigned len)\n{\n", helper, f, k > file
            printf "    unsigned a = x ^ %uu, b = %uu, i, j;\n", (f * 2654435761 + k) % 4294967296, (k * 40503 + f) % 65536 > file
            printf "    unsigned t[16];\n" > file
            printf "    for (i = 0; i < 16; i++) t[i] = a * (i + %d) + b;\n", m1 > file
            printf "    for (i = 0; i < len; i++) {\n" > file
            printf "        for (j = 0; j < 16; j++) t[j] = (t[j] << %d | t[j] >> %d) ^ s[(i + j) %% len];\n", m2 % 31 + 1, 31 - m2 % 31 > file
            printf "        switch ((s[i] + a) %% 8) {\n" > file
            for (c = 0; c < 8; c++)
                printf "        case %d: a = a * %du + t[%d] + %du; b ^= a >> %d; break;\n", c, (c * 2 + 1) * m1 + 1, (c + k) % 16, c * m2 + f, (c + m2) % 13 + 1 > file
            printf "        }\n    }\n" > file
            printf "    for (i = 0; i < 16; i++) a += t[i] * (i | 1u);\n" > file
            printf "    return a ^ b;\n}\n\n" > file
        }
        printf "unsigned entry%04d(unsigned x)\n{\n", f > file
        printf "    static const unsigned char s[] = \"file%04d-seed\";\n    unsigned a = x;\n", f > file
        for (k = 0; k < funcs; k++)
            printf "    a = %s%d_%d(a, s, sizeof s - 1);\n", helper, f, k > file
        printf "    return a;\n}\n" > file
        close(file)
    }
    table = dir "/table.c"
    printf "/* generated */\n" > table
    for (f = 0; f < n; f++) printf "unsigned entry%04d(unsigned);\n", f > table
    printf "typedef unsigned (*entry_fn)(unsigned);\nconst entry_fn entries[] = {\n" > table
    for (f = 0; f < n; f++) printf "    entry%04d,\n", f > table
    printf "    0\n};\nconst unsigned nentries = %d;\n", n > table
    close(table)
}'
