#include "supaplane/grpc_edge/edge.hpp"

namespace supaplane::grpc_edge {

grpc::Status to_grpc(const Error& e) {
  using C = grpc::StatusCode;
  switch (e.code) {
    case errc::invalid_argument:
      return grpc::Status(C::INVALID_ARGUMENT,
                          e.field.empty() ? e.message : e.field + ": " + e.message);
    case errc::not_found:
      return grpc::Status(C::NOT_FOUND, e.message);
    case errc::already_exists:
      return grpc::Status(C::ALREADY_EXISTS, e.message);
    case errc::failed_precondition:
      return grpc::Status(C::FAILED_PRECONDITION, e.message);
    case errc::conflict:
      return grpc::Status(C::ABORTED, e.message);
    case errc::unavailable:
      return grpc::Status(C::UNAVAILABLE, e.message);
    case errc::unauthenticated:
      return grpc::Status(C::UNAUTHENTICATED, e.message);
    case errc::permission_denied:
      return grpc::Status(C::PERMISSION_DENIED, e.message);
    case errc::resource_exhausted:
      return grpc::Status(C::RESOURCE_EXHAUSTED, e.message);
    case errc::incompatible:
    case errc::corrupt:
    case errc::internal:
      return grpc::Status(C::INTERNAL, "internal error");
  }
  return grpc::Status(C::INTERNAL, "internal error");
}

Result<std::string> bearer_token(const grpc::ServerContextBase& sc) {
  const auto& md = sc.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return make_error(errc::unauthenticated, "missing authorization metadata");
  const std::string_view v(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (v.size() <= kBearer.size() || v.substr(0, kBearer.size()) != kBearer)
    return make_error(errc::unauthenticated, "authorization must be 'Bearer <token>'");
  return std::string(v.substr(kBearer.size()));
}

Gate::Gate(const auth::TokenService& tokens, prometheus::Family<prometheus::Counter>* refused)
    : tokens_(tokens), refused_(refused) {}

void Gate::refuse(std::string_view reason) const {
  if (refused_) refused_->Add({{"reason", std::string(reason)}}).Increment();
}

Result<auth::Principal> Gate::authenticate(const grpc::ServerContextBase& sc) const {
  auto token = bearer_token(sc);
  if (!token) {
    refuse("unauthenticated");
    return token.error();
  }
  auto p = tokens_.verify(*token);
  if (!p) refuse("unauthenticated");
  return p;
}

Result<auth::Principal> Gate::authenticate_admin(const grpc::ServerContextBase& sc) const {
  auto p = authenticate(sc);
  if (!p) return p;
  if (!p->is_admin()) {
    refuse("not_admin");
    return make_error(errc::permission_denied, "admin role required");
  }
  return p;
}

Status Gate::check_owner(const auth::Principal& caller, const std::string& owner_account_id) const {
  if (caller.is_admin() || (!owner_account_id.empty() && owner_account_id == caller.account_id))
    return Status::Ok();
  refuse("not_owner");
  return make_error(errc::not_found, "tenant not found");
}

}  // namespace supaplane::grpc_edge
