#pragma once
#include <prometheus/labels.h>

#include <string>

#include "supaplane/http/server.hpp"
#include "supaplane/metrics/mirror.hpp"

namespace supaplane::http {

/// Exports `server`'s counters and gauges through `mirror` as
/// `<prefix><name>` (e.g. supaplane_router_http_header_timeouts_total) with
/// `labels` on each; the worker-pool ones only when the server has workers.
/// The server must outlive the mirror's syncs.
void export_metrics(metrics::Mirror& mirror, const std::string& prefix,
                    const prometheus::Labels& labels, const EpollHttpServer& server);

}  // namespace supaplane::http
