#pragma once
// What the api's three gRPC services share: call timing and counting, the
// conversions between our types and the API's, and the head of a tenant read.
// Authentication, the owner check and error mapping are lib/grpc_edge's.
#include <google/protobuf/timestamp.pb.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "app.hpp"
#include "supaplane/events/history.hpp"
#include "supaplane/grpc_edge/edge.hpp"
#include "supaplane/v1/api.grpc.pb.h"

namespace supaplane::api {

using grpc_edge::to_grpc;

grpc::Status invalid(const std::string& field, const std::string& msg);

/// Times a call and counts its result.
class CallScope {
 public:
  CallScope(ApiContext& ctx, const char* method)
      : ctx_(ctx), method_(method), t0_(std::chrono::steady_clock::now()) {}
  grpc::Status done(grpc::Status s) {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    ctx_.metrics.command_seconds
        .Add({{"method", method_}},
             prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                     0.05, 0.1, 0.25, 0.5, 1, 2.5, 5})
        .Observe(secs);
    ctx_.metrics.commands.Add({{"method", method_}, {"code", code_name(s.error_code())}})
        .Increment();
    return s;
  }

 private:
  static const char* code_name(grpc::StatusCode c) {
    switch (c) {
      case grpc::StatusCode::OK:
        return "OK";
      case grpc::StatusCode::INVALID_ARGUMENT:
        return "INVALID_ARGUMENT";
      case grpc::StatusCode::NOT_FOUND:
        return "NOT_FOUND";
      case grpc::StatusCode::ALREADY_EXISTS:
        return "ALREADY_EXISTS";
      case grpc::StatusCode::FAILED_PRECONDITION:
        return "FAILED_PRECONDITION";
      case grpc::StatusCode::UNAUTHENTICATED:
        return "UNAUTHENTICATED";
      case grpc::StatusCode::PERMISSION_DENIED:
        return "PERMISSION_DENIED";
      case grpc::StatusCode::UNAVAILABLE:
        return "UNAVAILABLE";
      case grpc::StatusCode::ABORTED:
        return "ABORTED";
      case grpc::StatusCode::OUT_OF_RANGE:
        return "OUT_OF_RANGE";
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        return "RESOURCE_EXHAUSTED";
      default:
        return "OTHER";
    }
  }
  ApiContext& ctx_;
  const char* method_;
  std::chrono::steady_clock::time_point t0_;
};

/// The caller's `x-correlation-id` when it is a valid id, else a fresh one.
std::string correlation_id(grpc::ServerContextBase* sc);
google::protobuf::Timestamp ts(std::int64_t unix_ms);
v1::Tenant to_api(const ApiContext& ctx, const v1::TenantState& s);
grpc::Status validate_request_id(const std::string& rid);
void fill_account(const AccountRow& a, v1::Account* out);
void fill_event(const events::HistoryRecord& h, v1::TenantEventRecord* e);
/// A page token: the decimal position after which the next page starts
/// ("" = the start). Anything else is refused, never thrown on.
std::optional<std::uint64_t> parse_page_token(const std::string& t);
grpc::Status page_args(const v1::ListTenantsRequest& req, projection::ListQuery* q);
/// Holds a read until the projection reached `min_sequence` (0: no wait).
grpc::Status wait_for(ApiContext& ctx, std::uint64_t min_sequence);
/// The head of every read of one tenant: the caller, the ref, `min_sequence`
/// reached, and the tenant from the projection if the caller owns it (or is
/// an admin); another customer's tenant is NOT_FOUND.
grpc::Status read_owned_tenant(ApiContext& ctx, grpc::ServerContextBase* sc,
                               const v1::GetTenantRequest& req, v1::TenantState* out,
                               auth::Principal* caller = nullptr);
grpc::Status list_into(ApiContext& ctx, projection::ListQuery q, v1::ListTenantsResponse* resp);
grpc::Status mutation_reply(ApiContext& ctx, Result<Mutation> m, v1::TenantMutation* resp);

}  // namespace supaplane::api
