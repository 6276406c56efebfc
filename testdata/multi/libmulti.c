#include "multi.h"
unsigned multi_mix(unsigned a, unsigned b)
{
    unsigned i;
    for (i = 0; i < 32; i++)
        a = (a << 5 | a >> 27) ^ (b + i * 2654435761u);
    return a;
}
