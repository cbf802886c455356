#include "api_client.hpp"

#include <chrono>

#include "exit_codes.hpp"
#include "supaplane/core/ids.hpp"
#include "token_file.hpp"

namespace supaplane::cli {

ApiClient::ApiClient(const GlobalOptions& g, std::string token)
    : g_(g),
      token_(std::move(token)),
      channel_(grpc::CreateChannel(
          g.api_addr, g.credentials ? g.credentials : grpc::InsecureChannelCredentials())),
      accounts_(v1::AccountService::NewStub(channel_)),
      tenants_(v1::TenantService::NewStub(channel_)),
      admin_(v1::AdminService::NewStub(channel_)),
      billing_(v1::BillingService::NewStub(grpc::CreateChannel(
          g.billing_addr, g.credentials ? g.credentials : grpc::InsecureChannelCredentials()))) {}

std::unique_ptr<grpc::ClientContext> ApiClient::context(bool streaming) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!streaming)
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(g_.timeout_seconds));
  if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  last_correlation_id_ = ids::random_hex_id();
  ctx->AddMetadata("x-correlation-id", last_correlation_id_);
  return ctx;
}

int ApiClient::fail(const grpc::Status& s) const {
  const ExitCode code = exit_code_for(s.error_code());
  const std::string peer =
      to_billing_ ? "billing at " + g_.billing_addr : "the API at " + g_.api_addr;
  switch (s.error_code()) {
    case grpc::StatusCode::UNAUTHENTICATED:
      // Without a token this was signup / login itself: no hint to log in.
      return cli::fail(code, s.error_message(), token_.empty() ? "" : "run supaplanectl login");
    case grpc::StatusCode::UNAVAILABLE:
      return cli::fail(code, "cannot reach " + peer + ": " + s.error_message());
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return cli::fail(code, "no answer from " + peer + " within " +
                                 std::to_string(g_.timeout_seconds) + " s (raise --timeout?)");
    default:
      break;
  }
  if (code == ExitCode::internal)
    return cli::fail(code, s.error_message(), "correlation id " + last_correlation_id_);
  return cli::fail(code, s.error_message());
}

Result<std::string> load_token(const GlobalOptions& g) {
  if (!g.token.empty()) return g.token;
  return read_token_file(g.token_file);
}

int with_session(const GlobalOptions& g, const std::function<int(ApiClient&)>& body) {
  auto token = load_token(g);
  if (!token) {
    const auto& e = token.error();
    if (e.code == errc::not_found) return fail(ExitCode::auth, e.message, "run supaplanectl login");
    return fail(e);
  }
  ApiClient client(g, std::move(*token));
  return body(client);
}

}  // namespace supaplane::cli
