/* proxy/admin.h: the admin HTTP server (metrics, health, state), on the main thread's
 * loop, next to the signal handlers and away from the workers' data path. */
#ifndef ZT_ADMIN_H
#define ZT_ADMIN_H

#include <uv.h>

#include "zt_error.h"

typedef struct zt_server zt_server_t;
typedef struct zt_admin zt_admin_t;

int zt_admin_start(zt_admin_t **out, uv_loop_t *loop, zt_server_t *srv, zt_error_t *err);
void zt_admin_stop(zt_admin_t *a);
/* Every worker has answered a /connections request: send the replies. */
void zt_admin_connections_ready(zt_admin_t *a);

#endif
