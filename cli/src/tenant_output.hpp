#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "options.hpp"
#include "supaplane/core/result.hpp"
#include "supaplane/v1/api.pb.h"

namespace supaplane::cli {

/// --phase, --page-size, --page-token (tenant list, admin list).
void add_list_options(CLI::App* cmd, std::string& phase, int& page_size, std::string& page_token);
/// invalid_argument when the phase is not a known phase name.
Result<v1::ListTenantsRequest> list_request(const std::string& phase, int page_size,
                                            const std::string& page_token);

/// The table (REF NAME [OWNER] PLAN PHASE STATUS UPDATED) and the next page token.
void print_tenant_list(const GlobalOptions& g, const v1::ListTenantsResponse& resp,
                       bool with_owner);
/// The tenant after a command and the stream sequence that holds it.
void print_mutation(const GlobalOptions& g, const v1::TenantMutation& m,
                    const std::string& request_id);

}  // namespace supaplane::cli
