/* greet fixture: prints what make, configure and a generator read from
 * the derivation's attributes when it was built. */
#include <stdio.h>
#include "config.h"
#include "flags.h"

extern const char *banner;

int main(void)
{
    printf("greeting: %s\nmotto: %s\nbanner: %s\nconfigure flags: %s\nmake extra: %s\n",
           GREETING, MOTTO, banner, CONFIGURE_FLAGS, MAKE_EXTRA);
    return 0;
}
