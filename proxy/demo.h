/* proxy/demo.h: `ztproxy demo`, a two-workload mesh on 127.0.0.1. */
#ifndef ZT_DEMO_H
#define ZT_DEMO_H
int zt_cmd_demo(int argc, char **argv);
#endif
