#pragma once
#include <grpcpp/grpcpp.h>

#include <memory>

#include "supaplane/core/result.hpp"

namespace supaplane::api {

struct ApiContext;

std::unique_ptr<grpc::Service> make_account_service(ApiContext& ctx);
std::unique_ptr<grpc::Service> make_tenant_service(ApiContext& ctx);
std::unique_ptr<grpc::Service> make_admin_service(ApiContext& ctx);

/// errc → gRPC status; invalid_argument names the field.
grpc::Status to_grpc(const Error& e);

}  // namespace supaplane::api
