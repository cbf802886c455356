#pragma once
#include <grpcpp/grpcpp.h>

#include <memory>

#include "supaplane/core/result.hpp"

namespace supaplane::api {

struct ApiContext;

// One file each: account_service.cpp, tenant_service.cpp, admin_service.cpp
// (what they share: service_helpers.hpp and lib/grpc_edge).
std::unique_ptr<grpc::Service> make_account_service(ApiContext& ctx);
std::unique_ptr<grpc::Service> make_tenant_service(ApiContext& ctx);
std::unique_ptr<grpc::Service> make_admin_service(ApiContext& ctx);

}  // namespace supaplane::api
