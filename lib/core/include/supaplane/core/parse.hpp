#pragma once
// Numbers from outside the process (Redis values, headers, tokens): parsed
// without exceptions, so bad data is an error to report, never a crash.
#include <charconv>
#include <cstdint>
#include <optional>
#include <string_view>

namespace supaplane {

/// The whole of `s` as a decimal integer of type T; nullopt for anything
/// else (empty, a sign where T is unsigned, trailing characters, overflow).
template <typename T>
std::optional<T> parse_decimal(std::string_view s) {
  T v{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace supaplane
