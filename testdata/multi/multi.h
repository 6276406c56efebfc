#ifndef MULTI_H
#define MULTI_H
unsigned multi_mix(unsigned a, unsigned b);
#endif
