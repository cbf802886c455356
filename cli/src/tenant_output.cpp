#include "tenant_output.hpp"

#include <iostream>

#include "output.hpp"

namespace supaplane::cli {

void add_list_options(CLI::App* cmd, std::string& phase, int& page_size, std::string& page_token) {
  cmd->add_option("--phase", phase, "only tenants in this phase (active, paused, ...)");
  cmd->add_option("--page-size", page_size, "tenants per page, 1..500 (default 50)")
      ->check(CLI::Range(1, 500));
  cmd->add_option("--page-token", page_token, "continue from a previous page");
}

Result<v1::ListTenantsRequest> list_request(const std::string& phase, int page_size,
                                            const std::string& page_token) {
  v1::ListTenantsRequest req;
  if (!phase.empty()) {
    auto p = parse_phase(phase);
    if (!p)
      return make_error(errc::invalid_argument,
                        "--phase: unknown phase '" + phase +
                            "' (provisioning, active, pausing, paused, resuming, suspended, "
                            "reconciling, deleting, deleted, failed)",
                        "phase");
    req.set_phase(*p);
  }
  req.set_page_size(page_size);
  req.set_page_token(page_token);
  return req;
}

void print_tenant_list(const GlobalOptions& g, const v1::ListTenantsResponse& resp,
                       bool with_owner) {
  if (g.json) {
    Json j;
    j["tenants"] = Json::array();
    for (const auto& t : resp.tenants()) j["tenants"].push_back(tenant_json(t));
    j["next_page_token"] = resp.next_page_token();
    print_json(std::cout, j);
    return;
  }
  std::vector<std::string> headers{"REF", "NAME"};
  if (with_owner) headers.push_back("OWNER");
  headers.insert(headers.end(), {"PLAN", "PHASE", "STATUS", "UPDATED"});
  Table table(std::move(headers));
  for (const auto& t : resp.tenants()) {
    std::vector<std::string> row{t.ref(), t.name()};
    if (with_owner) row.push_back(t.owner_account_id());
    row.insert(row.end(), {plan_name(t.plan()), phase_label(t.phase()), t.status(),
                           format_time(t.updated_at())});
    table.add(std::move(row));
  }
  table.print(std::cout);
  if (!resp.next_page_token().empty())
    std::cout << "next page: --page-token " << resp.next_page_token() << "\n";
}

void print_mutation(const GlobalOptions& g, const v1::TenantMutation& m,
                    const std::string& request_id) {
  if (g.json) {
    Json j;
    j["tenant"] = tenant_json(m.tenant());
    j["sequence"] = m.sequence();
    if (!request_id.empty()) j["request_id"] = request_id;
    print_json(std::cout, j);
    return;
  }
  print_tenant(std::cout, m.tenant());
  std::cout << "sequence " << m.sequence();
  if (!request_id.empty()) std::cout << " (request id " << request_id << ")";
  std::cout << "\n";
}

}  // namespace supaplane::cli
