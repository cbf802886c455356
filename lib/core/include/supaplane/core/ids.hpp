#pragma once
#include <string>
#include <string_view>

#include "supaplane/core/result.hpp"
#include "supaplane/core/types.hpp"

namespace supaplane::ids {

/// 20 random lowercase letters.
TenantRef random_tenant_ref();
/// Deterministic ref for (account, request id): a retried CreateTenant with the
/// same request id lands on the same subject, so it cannot create twice.
TenantRef tenant_ref_for(std::string_view account_id, std::string_view request_id);
/// "acct_" + 20 lowercase letters / digits.
std::string new_account_id();
bool valid_account_id(std::string_view s) noexcept;
/// 32 hex characters of randomness (event ids, correlation ids).
std::string random_hex_id();
/// Client request ids: 1..128 chars of [A-Za-z0-9_.:-].
bool valid_request_id(std::string_view s) noexcept;
/// Tenant names: 1..64 printable characters, not only whitespace, no control chars.
Status validate_tenant_name(std::string_view name);
Result<TenantRef> parse_tenant_ref(std::string_view s, std::string_view field = "ref");

}  // namespace supaplane::ids
