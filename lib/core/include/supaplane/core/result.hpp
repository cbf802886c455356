#pragma once
#include <string>
#include <utility>
#include <variant>

namespace supaplane {

/// Expected failure categories shared by all libraries. Adapters map them to
/// gRPC / HTTP codes at the edge.
enum class errc {
  invalid_argument,  ///< bad input; `Error::field` names the field
  not_found,
  already_exists,
  failed_precondition,  ///< impossible transition
  conflict,             ///< optimistic-concurrency conflict (wrong expected sequence)
  unavailable,          ///< a dependency is down or timed out
  unauthenticated,
  permission_denied,
  incompatible,  ///< e.g. the stream exists with incompatible settings
  corrupt,       ///< a message that cannot be decoded
  internal,
  resource_exhausted,  ///< a limit or quota turned the call away
};

const char* to_string(errc e) noexcept;

struct Error {
  errc code{errc::internal};
  std::string message;
  std::string field;  ///< for invalid_argument: the offending field
};

inline Error make_error(errc code, std::string message, std::string field = {}) {
  return Error{code, std::move(message), std::move(field)};
}

/// A value or an Error. Small on purpose: enough for our call sites.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(implicit)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(implicit)
  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

struct Unit {};

/// Result without a value.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error e) : error_(std::move(e)), ok_(false) {}  // NOLINT(implicit)
  static Status Ok() { return {}; }
  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_{true};
};

}  // namespace supaplane
