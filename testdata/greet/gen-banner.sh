#!/bin/sh
# The generator make runs: reads the derivation attribute $banner from the
# environment make passes on.
printf 'const char *banner = "%s";\n' "${banner:-}"
