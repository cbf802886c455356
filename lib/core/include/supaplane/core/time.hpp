#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace supaplane {

/// Source of wall-clock time; injected so tests control it.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::int64_t now_unix_ms() const = 0;
};

class SystemClock final : public Clock {
 public:
  std::int64_t now_unix_ms() const override;
  static const SystemClock& instance();
};

/// "2026-11-22T10:00:00.123Z"
std::string format_rfc3339_ms(std::int64_t unix_ms);
/// Parses RFC 3339 ("2026-11-22T10:00:00Z", fractional seconds and
/// +hh:mm offsets accepted). Returns nullopt when malformed.
std::optional<std::int64_t> parse_rfc3339_ms(std::string_view s);

}  // namespace supaplane
