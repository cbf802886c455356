#pragma once
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "options.hpp"
#include "supaplane/core/result.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace supaplane::cli {

/// The gRPC stubs of one API address plus the per-call metadata (deadline,
/// bearer token, correlation id). Single-threaded use.
class ApiClient {
 public:
  /// `token` empty: no authorization metadata (SignUp / Login).
  ApiClient(const GlobalOptions& g, std::string token);

  v1::AccountService::Stub& accounts() { return on_api(*accounts_); }
  v1::TenantService::Stub& tenants() { return on_api(*tenants_); }
  v1::AdminService::Stub& admin() { return on_api(*admin_); }
  /// supaplane-billing's service (its own address, the same token and TLS).
  v1::BillingService::Stub& billing() {
    to_billing_ = true;
    return *billing_;
  }

  /// A context for one call; `streaming` calls get no deadline.
  std::unique_ptr<grpc::ClientContext> context(bool streaming = false);

  /// Prints the failure of the last call and returns its exit code.
  int fail(const grpc::Status& s) const;

 private:
  const GlobalOptions& g_;
  std::string token_;
  std::string last_correlation_id_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AccountService::Stub> accounts_;
  std::unique_ptr<v1::TenantService::Stub> tenants_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::BillingService::Stub> billing_;
  bool to_billing_{false};  ///< the last stub handed out: for fail()'s message
  template <typename Stub>
  Stub& on_api(Stub& s) {
    to_billing_ = false;
    return s;
  }
};

/// --token / SUPAPLANE_TOKEN, else the token file.
Result<std::string> load_token(const GlobalOptions& g);

/// Runs `body` with a client that carries the saved session token; fails with
/// exit code 3 and a login hint when there is none.
int with_session(const GlobalOptions& g, const std::function<int(ApiClient&)>& body);

/// The shape of most commands: one unary call in a session; a failed call
/// maps to its exit code, a good answer goes to `print`.
/// `call(ApiClient&, grpc::ClientContext*, Resp*) -> grpc::Status`.
template <typename Resp, typename Call, typename Print>
int unary_call(const GlobalOptions& g, Call&& call, Print&& print) {
  return with_session(g, [&](ApiClient& client) {
    Resp resp;
    auto ctx = client.context();
    const grpc::Status s = call(client, ctx.get(), &resp);
    if (!s.ok()) return client.fail(s);
    print(resp);
    return 0;
  });
}

}  // namespace supaplane::cli
