/* proxy/cmd_identity.h: the `ztproxy identity ca|issue|show` subcommand. */
#ifndef ZT_CMD_IDENTITY_H
#define ZT_CMD_IDENTITY_H

/* argv[0] is "identity". Returns the process exit code: 0 done (or --help), 1 the
 * work failed (reason on stderr), 2 usage error (one line on stderr). */
int zt_cmd_identity(int argc, char **argv);

#endif
