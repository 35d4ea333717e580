/* proxy/cmd_policy.h: the `ztproxy policy check|explain|test` subcommand. */
#ifndef ZT_CMD_POLICY_H
#define ZT_CMD_POLICY_H

/* argv[0] is "policy". Returns the process exit code:
 *   check    0 clean, 1 warnings, 2 errors (file:line:column on stderr) or usage
 *   explain  0 explained, 2 load or usage error
 *   test     0 every case passed, 1 some case failed, 2 load or usage error
 * --help on any of them prints its usage and returns 0. */
int zt_cmd_policy(int argc, char **argv);

#endif
