#pragma once
#include <grpcpp/support/status.h>

#include <string>

#include "supaplane/core/result.hpp"

namespace supaplane::cli {

/// Process exit codes; documented in README.md and in the --help footer.
enum class ExitCode : int {
  ok = 0,
  internal = 1,     ///< anything else
  usage = 2,        ///< bad command line or INVALID_ARGUMENT
  auth = 3,         ///< UNAUTHENTICATED / PERMISSION_DENIED
  not_found = 4,    ///< NOT_FOUND
  rejected = 5,     ///< FAILED_PRECONDITION / ALREADY_EXISTS / ABORTED
  unavailable = 6,  ///< UNAVAILABLE / DEADLINE_EXCEEDED
};

inline constexpr const char* kExitCodesHelp =
    "Exit codes:\n"
    "  0  ok\n"
    "  1  other / internal error\n"
    "  2  usage error or INVALID_ARGUMENT\n"
    "  3  UNAUTHENTICATED or PERMISSION_DENIED (run `supaplanectl login`)\n"
    "  4  NOT_FOUND\n"
    "  5  FAILED_PRECONDITION, ALREADY_EXISTS or ABORTED\n"
    "  6  UNAVAILABLE or DEADLINE_EXCEEDED (API or NATS not reachable)";

ExitCode exit_code_for(grpc::StatusCode code) noexcept;
ExitCode exit_code_for(errc code) noexcept;

/// Prints `error: <message>` (and `hint: <hint>` when given) to stderr and
/// returns the exit code as an int, so callers can `return fail(...)`.
int fail(ExitCode code, const std::string& message, const std::string& hint = {});
/// A usage error (exit 2).
int fail_usage(const std::string& message);
/// An error from our libraries; `where` names the dependency for `unavailable`.
int fail(const Error& e, const std::string& where = {});

}  // namespace supaplane::cli
