#include <stdio.h>
#include "multi.h"
int main(void)
{
    printf("multi %08x\n", multi_mix(1, 2));
    return 0;
}
