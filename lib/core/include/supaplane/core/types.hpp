#pragma once
#include <compare>
#include <cstdint>
#include <functional>
#include <string>

namespace supaplane {

/// A value of T that cannot be mixed up with another NamedType of the same T.
template <typename T, typename Tag>
class NamedType {
 public:
  using value_type = T;
  constexpr NamedType() = default;
  constexpr explicit NamedType(T v) : v_(std::move(v)) {}
  constexpr const T& value() const noexcept { return v_; }
  auto operator<=>(const NamedType&) const = default;

 private:
  T v_{};
};

/// Stream sequence of a message on the PLATFORM stream (0 = none).
using StreamSequence = NamedType<std::uint64_t, struct StreamSequenceTag>;
/// Desired-state generation of a tenant.
using Generation = NamedType<std::int64_t, struct GenerationTag>;

/// A tenant's public id: exactly 20 lowercase ASCII letters (validated).
class TenantRef {
 public:
  static constexpr std::size_t kLength = 20;
  /// Returns true when `s` is a well-formed ref.
  static bool valid(std::string_view s) noexcept;
  static TenantRef unchecked(std::string s) { return TenantRef(std::move(s)); }
  const std::string& str() const noexcept { return v_; }
  auto operator<=>(const TenantRef&) const = default;

 private:
  explicit TenantRef(std::string s) : v_(std::move(s)) {}
  std::string v_;
};

}  // namespace supaplane
