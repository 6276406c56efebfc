/* Embeds the install prefix the way real programs do. The string is
 * PREFIX "/share" (58 bytes with the NUL for the 51-byte store path of
 * embed-1): at -O2 gcc copies it with 16-byte stores, the last of which
 * overlaps and starts at the hash's last character, so that character also
 * sits in .rodata apart from the whole hash. */
#include <stdio.h>
#include <string.h>

#ifndef PREFIX
#error PREFIX must be defined
#endif

int main(int argc, char **argv)
{
	char buf[256];
	strcpy(buf, PREFIX "/share");
	if (argc > 1)
		strcat(buf, argv[1]);
	printf("data lives in %s\n", buf);
	return 0;
}
