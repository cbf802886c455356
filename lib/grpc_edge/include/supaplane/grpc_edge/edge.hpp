#pragma once
#include <grpcpp/grpcpp.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>

#include <string>
#include <string_view>

#include "supaplane/auth/token.hpp"
#include "supaplane/core/result.hpp"

namespace supaplane::grpc_edge {

/// errc → gRPC status. invalid_argument names the field; internal, corrupt
/// and incompatible answer only "internal error" (their messages may name
/// internals the caller has no business seeing).
grpc::Status to_grpc(const Error& e);

/// The token of a call's `authorization: Bearer <token>` metadata;
/// unauthenticated when the metadata is missing or has another form.
Result<std::string> bearer_token(const grpc::ServerContextBase& sc);

/// Who may call one gRPC service: bearer token → principal, the admin check
/// and the owner check, each refusal counted by reason in the service's
/// `refused` family (`unauthenticated`, `not_admin`, `not_owner`). The
/// refusal never echoes the token. Thread-safe (the token service is).
class Gate {
 public:
  /// `refused` may be null (nothing counted).
  Gate(const auth::TokenService& tokens, prometheus::Family<prometheus::Counter>* refused);

  [[nodiscard]] Result<auth::Principal> authenticate(const grpc::ServerContextBase& sc) const;
  /// An authenticated admin; permission_denied for anyone else.
  [[nodiscard]] Result<auth::Principal> authenticate_admin(const grpc::ServerContextBase& sc) const;
  /// Whether `caller` may see a tenant owned by `owner_account_id` (its
  /// owner, or an admin). Another customer's tenant is not_found, never
  /// permission_denied: its existence is not the caller's business.
  [[nodiscard]] Status check_owner(const auth::Principal& caller,
                                   const std::string& owner_account_id) const;
  /// Counts one refusal for `reason`.
  void refuse(std::string_view reason) const;

 private:
  const auth::TokenService& tokens_;
  prometheus::Family<prometheus::Counter>* refused_;
};

}  // namespace supaplane::grpc_edge
